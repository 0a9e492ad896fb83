package siem_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"velocicompanion/adapters/kafka"
	"velocicompanion/adapters/siem"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

// benchEnv reads a positive integer from the environment, def otherwise.
func benchEnv(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// benchRsyslog is a real rsyslogd with one omfile sink, raw.log, holding each
// received message as one line.
type benchRsyslog struct {
	dir, addr string
	cmd       *exec.Cmd
	exited    chan error
}

func startBenchRsyslog(b *testing.B) *benchRsyslog {
	b.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	r := &benchRsyslog{dir: b.TempDir(), addr: "127.0.0.1:" + strconv.Itoa(port), exited: make(chan error, 1)}
	conf := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%d")
template(name="raw" type="string" string="%%rawmsg%%\n")
*.* action(type="omfile" file=%q template="raw")
`, r.dir, port, filepath.Join(r.dir, "raw.log"))
	confPath := filepath.Join(r.dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	out, err := os.Create(filepath.Join(r.dir, "rsyslogd.out"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	r.cmd = exec.Command(bin, "-n", "-f", confPath, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if err := r.cmd.Start(); err != nil {
		b.Fatalf("start rsyslogd (apt-get install -y rsyslog): %v", err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	b.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", r.addr, 200*time.Millisecond); err == nil {
			_ = c.Close()
			break
		}
		select {
		case err := <-r.exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.out"))
			b.Fatalf("rsyslogd exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("rsyslogd did not listen on %s", r.addr)
		}
		time.Sleep(20 * time.Millisecond) // polling a port, not waiting for work
	}
	return r
}

// tail reads a growing file from where it last stopped and hands each
// complete line to fn.
type tail struct {
	path    string
	off     int64
	partial []byte
	buf     []byte
}

func (t *tail) poll(fn func(line []byte)) error {
	f, err := os.Open(t.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if t.buf == nil {
		t.buf = make([]byte, 1<<20)
	}
	for {
		n, err := f.ReadAt(t.buf, t.off)
		t.off += int64(n)
		data := t.buf[:n]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				t.partial = append(t.partial, data...)
				break
			}
			if len(t.partial) > 0 {
				t.partial = append(t.partial, data[:i]...)
				fn(t.partial)
				t.partial = t.partial[:0]
			} else {
				fn(data[:i])
			}
			data = data[i+1:]
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// benchForwarder is a forwarder of tenant t1 rendering RFC 5424 with a CEF
// body, as a production syslog destination does, over plain TCP.
func benchForwarder(b *testing.B, addr string) (*siem.Forwarder, *siem.SyslogSender) {
	b.Helper()
	sender, err := siem.NewSyslogSender(siem.SyslogConfig{Transport: siem.TransportTCP, Addr: addr})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sender.Close() })
	f := &siem.Forwarder{ID: "bench", Tenant: "t1", Sender: sender,
		Render: siem.SyslogRender(siem.SyslogHeader{Facility: siem.FacilityAudit, Hostname: "vc-bench",
			AppName: "velocicompanion", ProcID: "1"}, siem.BodyCEF, siem.DefaultProduct),
		Dead: func(_ context.Context, env eventstore.Envelope, _ string, reason error) error {
			b.Errorf("dead-lettered %s: %v", env.EventID, reason)
			return nil
		}}
	return f, sender
}

func benchEnvelope(i int, at time.Time) eventstore.Envelope {
	return eventstore.Envelope{EventID: "bench-" + strconv.Itoa(i), Tenant: domain.TenantID("t1"),
		StreamType: "user", StreamID: "u" + strconv.Itoa(i%97), Name: "user.login_failed",
		Payload: []byte(`{"email":"a@example.com","reason":"bad password"}`), RecordedAt: at, Position: int64(i + 1),
		Metadata: eventstore.Metadata{Actor: "u1", SourceIP: "192.0.2.1", UserAgent: "bench/1.0"}}
}

// BenchmarkSyslogThroughput forwards VC_BENCH_EVENTS (default 50,000) events
// per iteration to a real rsyslogd over TCP with octet counting, rendered as
// RFC 5424 with a CEF body, and stops the clock only when rsyslog's omfile
// holds every line; events/s counts lines rsyslog wrote per second of wall
// time. "handle" calls Forwarder.Handle once per event (one Send each);
// "batch256" hands Forwarder.HandleBatch 256 events at a time, one Send (one
// write and flush) per batch.
func BenchmarkSyslogThroughput(b *testing.B) {
	b.Run("handle", func(b *testing.B) { benchThroughput(b, 1) })
	b.Run("batch256", func(b *testing.B) { benchThroughput(b, 256) })
}

func benchThroughput(b *testing.B, batch int) {
	n := benchEnv("VC_BENCH_EVENTS", 50_000)
	rs := startBenchRsyslog(b)
	f, _ := benchForwarder(b, rs.addr)
	ctx := context.Background()
	tl := &tail{path: filepath.Join(rs.dir, "raw.log")}
	lines := 0
	count := func([]byte) { lines++ }
	now := time.Now()
	envs := make([]eventstore.Envelope, n)
	for i := range envs {
		envs[i] = benchEnvelope(i, now)
	}
	total := 0
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		for i := 0; i < n; i += batch {
			var err error
			if batch == 1 {
				err = f.Handle(ctx, envs[i])
			} else {
				err = f.HandleBatch(ctx, envs[i:min(i+batch, n)])
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		total += n
		deadline := time.Now().Add(120 * time.Second)
		for lines < total {
			if err := tl.poll(count); err != nil {
				b.Fatal(err)
			}
			if lines >= total {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("rsyslog wrote %d of %d lines", lines, total)
			}
			time.Sleep(2 * time.Millisecond) // polling a file rsyslog writes
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if lines != total {
		b.Fatalf("rsyslog wrote %d lines, want %d", lines, total)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(n), "events/op")
}

// TestHandleBatch: one Send per batch of the destination's tenant, retried
// whole, and each event dead-lettered after the last attempt.
func TestHandleBatch(t *testing.T) {
	var waits []time.Duration
	sender := &fakeSender{failures: 1}
	dead := &deadLetters{}
	render := func(ev siem.Event) ([]byte, error) { return []byte(ev.ID), nil }
	f := &siem.Forwarder{ID: "d", Tenant: "t1", Sender: sender, Render: render, Dead: dead.receive,
		Retry: siem.Backoff{Attempts: 2, Initial: time.Millisecond}, Sleep: noSleep(&waits)}
	batch := []eventstore.Envelope{envelope("t1", "e1", "user.registered", `{}`),
		envelope("t2", "x", "user.registered", `{}`), envelope("t1", "e2", "user.registered", `{}`)}
	if err := f.HandleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if sender.calls != 2 || !slices.Equal(sender.sent, []string{"e1", "e2"}) || len(dead.envs) != 0 {
		t.Fatalf("calls %d, sent %v, dead %v", sender.calls, sender.sent, dead.envs)
	}
	sender.failures = 2
	if err := f.HandleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dead.envs, []string{"e1", "e2"}) {
		t.Fatalf("dead-lettered %v", dead.envs)
	}
}

// BenchmarkForwardLag hands events to Forwarder.Handle at a steady 1,000
// events/s for VC_BENCH_SECONDS (default 5) and measures, per event, the time
// from the moment it is handed to the forwarder (its RecordedAt) until this
// process sees rsyslog's line for it in the omfile (polled every 0.5ms). It
// covers Forwarder.Handle (classify, render, the sender's liveness check,
// write and flush), loopback TCP, rsyslog's parsing, queue and omfile write,
// and up to 0.5ms of polling; not the Kafka hop. p99-sched-ms measures from
// the event's slot in the schedule instead, so it also holds the time an
// event waited because the forwarder was still busy with earlier ones.
func BenchmarkForwardLag(b *testing.B) {
	secs := benchEnv("VC_BENCH_SECONDS", 5)
	const rate = 1000
	rs := startBenchRsyslog(b)
	f, _ := benchForwarder(b, rs.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tl := &tail{path: filepath.Join(rs.dir, "raw.log")}
	var lags, behind []time.Duration
	base := 0
	b.ResetTimer()
	for b.Loop() {
		n := secs * rate
		handed := make([]time.Time, n)
		scheduled := make([]time.Time, n)
		arrived := make([]time.Time, n)
		seen := 0
		var bad []string
		onLine := func(line []byte) {
			at := time.Now()
			s := string(line)
			i := strings.Index(s, `event_id="bench-`)
			if i < 0 {
				bad = append(bad, s)
				return
			}
			s = s[i+len(`event_id="bench-`):]
			j := strings.IndexByte(s, '"')
			k, err := strconv.Atoi(s[:max(j, 0)])
			k -= base
			if j < 0 || err != nil || k < 0 || k >= n || !arrived[k].IsZero() {
				bad = append(bad, string(line))
				return
			}
			arrived[k] = at
			seen++
		}
		done := make(chan error, 1)
		go func() {
			interval := time.Second / rate
			start := time.Now()
			for i := range n {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d) // pacing the producer at a steady rate
				}
				now := time.Now()
				scheduled[i], handed[i] = start.Add(time.Duration(i)*interval), now
				if err := f.Handle(ctx, benchEnvelope(base+i, now)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		deadline := time.Now().Add(time.Duration(secs)*time.Second + 30*time.Second)
		sent := false
		for seen < n {
			if err := tl.poll(onLine); err != nil {
				b.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					b.Fatal(err)
				}
				sent = true
			default:
			}
			if time.Now().After(deadline) {
				b.Fatalf("rsyslog wrote %d of %d events (all sent: %v)", seen, n, sent)
			}
			time.Sleep(500 * time.Microsecond) // polling a file rsyslog writes
		}
		if !sent {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		if len(bad) > 0 {
			b.Fatalf("%d unexpected lines, first %q", len(bad), bad[0])
		}
		for i := range n {
			lags = append(lags, arrived[i].Sub(handed[i]))
			behind = append(behind, arrived[i].Sub(scheduled[i]))
		}
		base += n
	}
	b.StopTimer()
	slices.Sort(lags)
	slices.Sort(behind)
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(lags, 0.50), "p50-ms")
	b.ReportMetric(pct(lags, 0.99), "p99-ms")
	b.ReportMetric(pct(lags, 1), "max-ms")
	// From the event's slot in the 1,000/s schedule: adds the wait when the
	// forwarder cannot keep up with the offered rate.
	b.ReportMetric(pct(behind, 0.99), "p99-sched-ms")
	b.ReportMetric(float64(len(lags)), "events")
}

// benchKafka starts an embedded broker whose events topic has 3 partitions,
// and returns its config and a publisher to it, as the relay uses.
func benchKafka(b *testing.B) (kafka.Config, *kafka.Publisher) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	cluster, err := kafka.Embedded(ctx, "", 0, "events", 3)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cluster.Close)
	cfg := cluster.Config("siem-bench")
	pub, err := kafka.NewPublisher(cfg, quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pub.Close() })
	return cfg, pub
}

// benchConsume runs the production consume path, Consume on a
// BatchSubscriber with default options, for f until the benchmark ends.
func benchConsume(b *testing.B, cfg kafka.Config, f *siem.Forwarder) {
	b.Helper()
	sub, err := kafka.NewBatchSubscriber(cfg, siem.Group(f.ID), kafka.BatchOptions{}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- siem.Consume(ctx, sub, cfg.Topic, f) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			b.Errorf("Consume: %v", err)
		}
	})
}

// benchWarmUp publishes one event and waits for rsyslog's line for it, so
// that the consumer has joined its group, fetched, and connected to rsyslog
// before the clock starts.
func benchWarmUp(b *testing.B, pub *kafka.Publisher, tl *tail) {
	b.Helper()
	if err := pub.Publish(context.Background(), []eventstore.Envelope{benchEnvelope(-2, time.Now())}); err != nil {
		b.Fatal(err)
	}
	lines := 0
	deadline := time.Now().Add(30 * time.Second)
	for lines == 0 {
		if err := tl.poll(func([]byte) { lines++ }); err != nil {
			b.Fatal(err)
		}
		if time.Now().After(deadline) {
			b.Fatal("the warm-up event never reached rsyslog")
		}
		time.Sleep(time.Millisecond) // polling a file rsyslog writes
	}
}

// arrivals records when rsyslog's line for each of the events bench-base ..
// bench-(base+len(at)-1) was seen.
type arrivals struct {
	base int
	at   []time.Time
	seen int
	bad  []string
}

func (a *arrivals) line(line []byte) {
	now := time.Now()
	s := string(line)
	i := strings.Index(s, `event_id="bench-`)
	if i < 0 {
		a.bad = append(a.bad, s)
		return
	}
	s = s[i+len(`event_id="bench-`):]
	j := strings.IndexByte(s, '"')
	k, err := strconv.Atoi(s[:max(j, 0)])
	k -= a.base
	if j < 0 || err != nil || k < 0 || k >= len(a.at) || !a.at[k].IsZero() {
		a.bad = append(a.bad, string(line))
		return
	}
	a.at[k] = now
	a.seen++
}

// wait polls tl until every event arrived, failing after timeout or when
// published reports an error.
func (a *arrivals) wait(b *testing.B, tl *tail, timeout time.Duration, published <-chan error) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for a.seen < len(a.at) {
		if err := tl.poll(a.line); err != nil {
			b.Fatal(err)
		}
		select {
		case err := <-published:
			if err != nil {
				b.Fatal(err)
			}
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("rsyslog wrote %d of %d events", a.seen, len(a.at))
		}
		time.Sleep(500 * time.Microsecond) // polling a file rsyslog writes
	}
	if len(a.bad) > 0 {
		b.Fatalf("%d unexpected lines, first %q", len(a.bad), a.bad[0])
	}
}

func reportLags(b *testing.B, lags []time.Duration) {
	slices.Sort(lags)
	pct := func(p float64) float64 {
		return float64(lags[min(len(lags)-1, int(p*float64(len(lags))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}

// BenchmarkSyslogThroughputKafka measures the production path end to end:
// VC_BENCH_EVENTS (default 50,000) events per iteration are published to the
// embedded Kafka (3 partitions) in batches of 1,000, as fast as the relay's
// Publisher goes, while Consume (a BatchSubscriber in its own consumer group,
// batches of up to 256 events or 5ms, warmed up by one event) forwards them to a real rsyslogd over
// TCP as RFC 5424 with a CEF body. events/s counts the lines rsyslog wrote
// per second from the first publish to the last line; p50/p99/max-ms is each
// event's lag from the moment its batch was handed to the publisher (its
// RecordedAt, standing in for the commit) until this process saw its line,
// so at full speed it includes the queueing behind earlier events.
func BenchmarkSyslogThroughputKafka(b *testing.B) {
	n := benchEnv("VC_BENCH_EVENTS", 50_000)
	const publishBatch = 1000
	cfg, pub := benchKafka(b)
	rs := startBenchRsyslog(b)
	f, _ := benchForwarder(b, rs.addr)
	benchConsume(b, cfg, f)
	tl := &tail{path: filepath.Join(rs.dir, "raw.log")}
	benchWarmUp(b, pub, tl)
	var lags []time.Duration
	var elapsed time.Duration
	base := 0
	b.ResetTimer()
	for b.Loop() {
		a := &arrivals{base: base, at: make([]time.Time, n)}
		recorded := make([]time.Time, n)
		published := make(chan error, 1)
		start := time.Now()
		go func() {
			envs := make([]eventstore.Envelope, 0, publishBatch)
			for i := 0; i < n; i += publishBatch {
				now := time.Now()
				envs = envs[:0]
				for k := i; k < min(i+publishBatch, n); k++ {
					recorded[k] = now
					envs = append(envs, benchEnvelope(base+k, now))
				}
				if err := pub.Publish(context.Background(), envs); err != nil {
					published <- err
					return
				}
			}
			published <- nil
		}()
		a.wait(b, tl, 120*time.Second, published)
		elapsed += time.Since(start)
		for k := range n {
			lags = append(lags, a.at[k].Sub(recorded[k]))
		}
		base += n
	}
	b.StopTimer()
	b.ReportMetric(float64(base)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(n), "events/op")
	reportLags(b, lags)
}

// BenchmarkForwardLagKafka publishes events to the embedded Kafka at a steady
// 1,000 events/s for VC_BENCH_SECONDS (default 5), each event on its own as
// the relay does when it finds one new event per poll, and measures, per
// event, the time from the moment it was handed to the publisher (its
// RecordedAt, standing in for the commit) until this process sees rsyslog's
// line for it: the Kafka produce and fetch, Consume's batching (linger 5ms),
// Forwarder.HandleBatch, loopback TCP, rsyslog, and up to 0.5ms of polling.
// Unlike BenchmarkForwardLag it includes the Kafka hop. One event first
// warms up the consumer (group join, first fetch, connection to rsyslog).
func BenchmarkForwardLagKafka(b *testing.B) {
	secs := benchEnv("VC_BENCH_SECONDS", 5)
	const rate = 1000
	cfg, pub := benchKafka(b)
	rs := startBenchRsyslog(b)
	f, _ := benchForwarder(b, rs.addr)
	benchConsume(b, cfg, f)
	tl := &tail{path: filepath.Join(rs.dir, "raw.log")}
	benchWarmUp(b, pub, tl)
	var lags []time.Duration
	base := 0
	b.ResetTimer()
	for b.Loop() {
		n := secs * rate
		a := &arrivals{base: base, at: make([]time.Time, n)}
		recorded := make([]time.Time, n)
		published := make(chan error, 1)
		go func() {
			interval := time.Second / rate
			start := time.Now()
			for i := 0; i < n; {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d) // pacing the producer at a steady rate
				}
				// Publish every event whose slot has come: one, unless the
				// previous publish overran its slot.
				now := time.Now()
				end := min(n, max(int(now.Sub(start)/interval)+1, i+1))
				envs := make([]eventstore.Envelope, 0, end-i)
				for ; i < end; i++ {
					recorded[i] = now
					envs = append(envs, benchEnvelope(base+i, now))
				}
				if err := pub.Publish(context.Background(), envs); err != nil {
					published <- err
					return
				}
			}
			published <- nil
		}()
		a.wait(b, tl, time.Duration(secs)*time.Second+30*time.Second, published)
		for k := range n {
			lags = append(lags, a.at[k].Sub(recorded[k]))
		}
		base += n
	}
	b.StopTimer()
	reportLags(b, lags)
	b.ReportMetric(float64(len(lags)), "events")
}
