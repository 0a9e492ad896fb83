package siem

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HECConfig says where and how an HECSender delivers to a Splunk HTTP Event
// Collector.
type HECConfig struct {
	// Control, if set, vets every address dialled (see NetPolicy.Control).
	Control func(network, address string, c syscall.RawConn) error
	// URL is the collector's base URL, e.g. https://splunk:8088; the sender
	// posts to /services/collector/event under it.
	URL string
	// Token is the HEC token, sent as "Authorization: Splunk <token>". It is
	// never part of an error.
	Token string
	// Ack turns on indexer acknowledgement: a batch counts as delivered only
	// once the collector reports it indexed.
	Ack bool
	// AckTimeout bounds the wait for an acknowledgement; 30s when zero.
	AckTimeout time.Duration
	// AckPoll is the first interval between acknowledgement polls; it
	// doubles up to 2s. 100ms when zero.
	AckPoll time.Duration
	// BusyRetries is how often a 429 or 503 answer is retried within one
	// Send, honouring Retry-After (capped at 10s) or doubling from 200ms. 3
	// when zero; a negative value retries never.
	BusyRetries int
	// TLS configures https; nil uses the system roots.
	TLS *tls.Config
	// Timeout bounds each HTTP request; 15s when zero.
	Timeout time.Duration
}

// HECSender posts batches of events to a Splunk HTTP Event Collector.
// It is safe for concurrent use.
type HECSender struct {
	cfg     HECConfig
	client  *http.Client
	event   string
	ack     string
	channel string
}

// NewHECSender returns a sender for cfg.
func NewHECSender(cfg HECConfig) (*HECSender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hec url %q: want an absolute http or https URL", cfg.URL)
	}
	if cfg.Token == "" {
		return nil, errors.New("hec: token required")
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.AckPoll <= 0 {
		cfg.AckPoll = 100 * time.Millisecond
	}
	if cfg.BusyRetries == 0 {
		cfg.BusyRetries = 3
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
	}
	if cfg.Control != nil {
		// Dial the destination itself, never an environment proxy, so that
		// the address vetted is the address reached.
		tr.Proxy = nil
		tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: cfg.Control}).DialContext
	}
	base := strings.TrimSuffix(u.String(), "/")
	var ch [16]byte
	_, _ = rand.Read(ch[:])
	ch[6] = ch[6]&0x0f | 0x40 // a version 4 UUID, as HEC expects of a channel
	ch[8] = ch[8]&0x3f | 0x80
	channel := fmt.Sprintf("%x-%x-%x-%x-%x", ch[0:4], ch[4:6], ch[6:8], ch[8:10], ch[10:16])
	return &HECSender{cfg: cfg, client: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		event: base + "/services/collector/event", ack: base + "/services/collector/ack", channel: channel}, nil
}

// hecAnswer is the collector's JSON answer.
type hecAnswer struct {
	Text  string `json:"text"`
	Code  int    `json:"code"`
	AckID *int64 `json:"ackId"`
}

// Send posts msgs (each one HEC event object, see HECRender) as one batch.
// It returns nil once the collector accepted the batch and, with Ack, once it
// reported the batch indexed.
func (s *HECSender) Send(ctx context.Context, msgs ...[]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	body := bytes.Join(msgs, []byte("\n"))
	wait := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		status, ans, retryAfter, err := s.post(ctx, s.event, body)
		if err != nil {
			return err
		}
		switch {
		case status == http.StatusOK:
			if !s.cfg.Ack {
				return nil
			}
			if ans.AckID == nil {
				return errors.New("hec: acknowledgement enabled but the collector returned no ackId")
			}
			return s.awaitAck(ctx, *ans.AckID)
		case (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && attempt < s.cfg.BusyRetries:
			d := wait
			if retryAfter > 0 {
				d = min(retryAfter, 10*time.Second)
			}
			wait *= 2
			if err := sleepCtx(ctx, d); err != nil {
				return err
			}
		default:
			return fmt.Errorf("hec: %d %s (code %d)", status, ans.Text, ans.Code)
		}
	}
}

// awaitAck polls the acknowledgement endpoint until id is indexed.
func (s *HECSender) awaitAck(ctx context.Context, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	body, _ := json.Marshal(map[string][]int64{"acks": {id}})
	key := strconv.FormatInt(id, 10)
	wait := s.cfg.AckPoll
	for {
		if err := sleepCtx(ctx, wait); err != nil {
			return fmt.Errorf("hec: ack %d not confirmed: %w", id, err)
		}
		wait = min(2*wait, 2*time.Second)
		req, err := s.request(ctx, s.ack, body)
		if err != nil {
			return err
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return fmt.Errorf("hec ack: %w", scrub(err))
		}
		var out struct {
			Acks map[string]bool `json:"acks"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
			continue
		case resp.StatusCode != http.StatusOK || err != nil:
			return fmt.Errorf("hec ack: %d", resp.StatusCode)
		case out.Acks[key]:
			return nil
		}
	}
}

func (s *HECSender) request(ctx context.Context, u string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Splunk "+s.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Splunk-Request-Channel", s.channel)
	return req, nil
}

func (s *HECSender) post(ctx context.Context, u string, body []byte) (int, hecAnswer, time.Duration, error) {
	req, err := s.request(ctx, u, body)
	if err != nil {
		return 0, hecAnswer{}, 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, hecAnswer{}, 0, fmt.Errorf("hec: %w", scrub(err))
	}
	defer resp.Body.Close()
	var ans hecAnswer
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans)
	var retryAfter time.Duration
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
		retryAfter = time.Duration(n) * time.Second
	}
	return resp.StatusCode, ans, retryAfter, nil
}

// scrub drops the request URL from a client error; it carries no secret
// today, but errors travel to logs and API answers.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Close releases idle connections.
func (s *HECSender) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HECMeta is what every HEC event says about where it belongs.
type HECMeta struct {
	Host, Source, SourceType, Index string
}

// HECRender renders events as HEC event objects: the JSON shape as the
// event, the recording time in epoch seconds with milliseconds.
func HECRender(m HECMeta) Render {
	if m.Source == "" {
		m.Source = DefaultProduct.Name
	}
	if m.SourceType == "" {
		m.SourceType = "velocicompanion:event"
	}
	return func(ev Event) ([]byte, error) {
		return json.Marshal(struct {
			Time       json.Number `json:"time"`
			Host       string      `json:"host,omitempty"`
			Source     string      `json:"source"`
			SourceType string      `json:"sourcetype"`
			Index      string      `json:"index,omitempty"`
			Event      JSON        `json:"event"`
		}{
			Time: json.Number(strconv.FormatFloat(float64(ev.Time.UnixMilli())/1000, 'f', 3, 64)),
			Host: m.Host, Source: m.Source, SourceType: m.SourceType, Index: m.Index, Event: ToJSON(ev),
		})
	}
}
