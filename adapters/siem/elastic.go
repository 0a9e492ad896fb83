package siem

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// DefaultDataStream is the data stream events go to unless a destination
// names another: type "logs", dataset "velocicompanion.audit", namespace
// "default".
const DefaultDataStream = "logs-velocicompanion.audit-default"

// ecsVersion is the ECS version the documents follow.
const ecsVersion = "8.11.0"

// ElasticConfig says where and how an ElasticSender delivers.
type ElasticConfig struct {
	// Control, if set, vets every address dialled (see NetPolicy.Control).
	Control    func(network, address string, c syscall.RawConn) error
	URL        string // base URL of an Elasticsearch node or proxy
	APIKey     string // base64 API key, sent as "Authorization: ApiKey <key>"; never part of an error
	DataStream string // DefaultDataStream when empty
	TLS        *tls.Config
	// Timeout bounds one Send; 30s when zero.
	Timeout time.Duration
}

// ElasticSender indexes ECS documents (see ECSRender) into a data stream with
// the official client's bulk indexer. Each document's _id is its event id and
// its op type "create" (the only one data streams accept), so a document sent
// again after a lost answer is refused as a conflict (409), which counts as
// delivered: redelivery never duplicates.
type ElasticSender struct {
	cfg    ElasticConfig
	client *elasticsearch.Client
}

// NewElasticSender returns a sender for cfg.
func NewElasticSender(cfg ElasticConfig) (*ElasticSender, error) {
	if cfg.DataStream == "" {
		cfg.DataStream = DefaultDataStream
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
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
	client, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:     []string{cfg.URL},
		APIKey:        cfg.APIKey,
		Transport:     tr,
		RetryOnStatus: []int{429, 502, 503, 504},
		MaxRetries:    3,
		RetryBackoff:  func(attempt int) time.Duration { return time.Duration(100<<min(attempt, 6)) * time.Millisecond },
	})
	if err != nil {
		return nil, fmt.Errorf("elastic client: %w", err)
	}
	return &ElasticSender{cfg: cfg, client: client}, nil
}

// Send indexes msgs, each one ECS document, and returns nil once every one is
// indexed (or was already).
func (s *ElasticSender) Send(ctx context.Context, msgs ...[]byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var (
		mu       sync.Mutex
		failures []string
		bulkErr  error
	)
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client: s.client, Index: s.cfg.DataStream, NumWorkers: 1, FlushBytes: 5 << 20, FlushInterval: time.Hour,
		OnError: func(_ context.Context, err error) {
			mu.Lock()
			defer mu.Unlock()
			bulkErr = errors.Join(bulkErr, err)
		},
	})
	if err != nil {
		return err
	}
	for _, m := range msgs {
		var doc struct {
			Event struct {
				ID string `json:"id"`
			} `json:"event"`
		}
		if err := json.Unmarshal(m, &doc); err != nil || doc.Event.ID == "" {
			_ = bi.Close(ctx)
			return errors.New("elastic: a document without event.id")
		}
		err := bi.Add(ctx, esutil.BulkIndexerItem{
			Action: "create", DocumentID: doc.Event.ID, Body: bytes.NewReader(m),
			OnFailure: func(_ context.Context, item esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
				if res.Status == http.StatusConflict {
					return // indexed by an earlier delivery
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("%s: %v", item.DocumentID, scrub(err)))
				} else {
					failures = append(failures, fmt.Sprintf("%s: %d %s", item.DocumentID, res.Status, res.Error.Type))
				}
			},
		})
		if err != nil {
			_ = bi.Close(ctx)
			return fmt.Errorf("elastic: %w", err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		return fmt.Errorf("elastic: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if bulkErr != nil {
		return fmt.Errorf("elastic bulk: %w", scrub(bulkErr))
	}
	if len(failures) > 0 {
		return fmt.Errorf("elastic: %d of %d documents not indexed: %s", len(failures), len(msgs), strings.Join(failures[:min(3, len(failures))], "; "))
	}
	return nil
}

// Close does nothing; the client keeps no state worth releasing.
func (s *ElasticSender) Close() error { return nil }

// ECSRender renders events as Elastic Common Schema documents.
func ECSRender() Render {
	return func(ev Event) ([]byte, error) { return json.Marshal(ECS(ev)) }
}

// ECS returns the ECS document of ev: event.* (category, type, outcome,
// severity and risk score from the threat class), user.*, source.ip,
// user_agent.original, organization.id for the tenant, and the TLP marking
// as threat.indicator.marking.tlp.
func ECS(ev Event) map[string]any {
	outcome := "success"
	if ev.Result != "" && ev.Result != "success" {
		outcome = "failure"
	}
	event := map[string]any{
		"id": ev.ID, "action": ev.Action, "kind": "event", "category": []string{ev.Category},
		"type": []string{ev.Kind}, "outcome": outcome, "dataset": "velocicompanion.audit",
		"severity": cefSeverity(ev.Threat), "risk_score": float64(max(ev.Threat.Level(), 0) * 25),
		"provider": DefaultProduct.Name, "sequence": ev.Position,
	}
	doc := map[string]any{
		"@timestamp":   ev.Time.UTC().Format(time.RFC3339Nano),
		"ecs":          map[string]any{"version": ecsVersion},
		"message":      title(ev.Action),
		"event":        event,
		"organization": map[string]any{"id": string(ev.Tenant)},
		"labels": map[string]any{"resource_type": ev.ResourceType, "resource_id": ev.ResourceID,
			"threat_class": string(ev.Threat)},
	}
	if ev.Actor != "" {
		user := map[string]any{"id": ev.Actor}
		if ev.Role != "" {
			user["roles"] = []string{ev.Role}
		}
		doc["user"] = user
	}
	if ip, err := netip.ParseAddr(ev.SourceIP); err == nil {
		doc["source"] = map[string]any{"ip": ip.Unmap().String()}
	}
	if ev.UserAgent != "" {
		doc["user_agent"] = map[string]any{"original": ev.UserAgent}
	}
	if ev.RequestID != "" {
		doc["http"] = map[string]any{"request": map[string]any{"id": ev.RequestID}}
	}
	if ev.CorrelationID != "" {
		doc["trace"] = map[string]any{"id": ev.CorrelationID}
	}
	if ev.TLP != "" {
		doc["threat"] = map[string]any{"indicator": map[string]any{"marking": map[string]any{"tlp": strings.ToUpper(ev.TLP)}}}
	}
	if ev.OCSFClass != 0 {
		doc["labels"].(map[string]any)["ocsf_class_uid"] = strconv.Itoa(ev.OCSFClass)
	}
	if len(ev.Details) > 0 && json.Valid(ev.Details) {
		doc["velocicompanion"] = map[string]any{"details": ev.Details}
	}
	return doc
}
