package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"velocicompanion/adapters/auth"
	"velocicompanion/adapters/httpapi"
	"velocicompanion/adapters/kafka"
	"velocicompanion/adapters/realtime"
	atrest "velocicompanion/adapters/secrets"
	"velocicompanion/adapters/totp"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
	"velocicompanion/projections"
)

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// serve runs the server until ctx ends: migrations, the embedded broker when no
// external Kafka is configured, the relay, the projectors and the HTTP API.
func serve(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	log := newLogger(stderr, cfg.LogLevel)
	slog.SetDefault(log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.close()

	kcfg, stopKafka, err := startKafka(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopKafka()

	secret, err := jwtSecret(cfg)
	if err != nil {
		return err
	}
	issuer := &auth.Issuer{Key: secret, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TTL: cfg.AccessTokenTTL}
	if err := issuer.Validate(); err != nil {
		return fmt.Errorf("jwt: %w", err)
	}
	hasher, err := auth.NewHasher(auth.HasherOptions{})
	if err != nil {
		return err
	}
	var sealer commands.Sealer // stays a nil interface without a master key
	keyring, err := masterKeyring(cfg, log)
	if err != nil {
		return err
	}
	if keyring != nil {
		sealer = keyring
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	codec := commands.NewCodec()
	store := eventstore.NewStore(db.app, codec)
	mailer, err := newMailer(cfg)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	var sendMail commands.Mailer // stays a nil interface without a mail server
	if mailer != nil {
		sendMail = mailer
	}
	handler := commands.New(store, hasher, commands.WithMailer(sendMail, log),
		commands.WithMFA(sealer, totpEdge{}, cfg.TOTPIssuer),
		commands.WithLoginThrottle(cfg.LoginIPMaxFailures, cfg.LoginIPWindow))
	if err := handler.EnsurePlatformTenant(ctx); err != nil {
		return fmt.Errorf("platform tenant: %w", err)
	}
	password, err := handler.BootstrapPlatformAdmin(ctx)
	if err != nil {
		return fmt.Errorf("platform administrator: %w", err)
	}
	if password != "" {
		fmt.Fprintf(stdout, "\nFirst start: created the platform administrator.\n"+
			"  username: admin\n  password: %s\n"+
			"This password is shown once. Sign in with POST /api/auth/login and change it with PATCH /api/users/{id}.\n\n",
			password)
	}

	publisher, err := kafka.NewPublisher(kcfg, log)
	if err != nil {
		return err
	}
	defer publisher.Close()
	relay := eventstore.NewRelay(store, publisher, eventstore.RelayOptions{Logger: log, Registerer: reg})
	auditJob, auditCheck, err := auditWiring(cfg, store, log, reg)
	if err != nil {
		return err
	}

	mw, closeMW, err := kafka.ConsumerMiddleware(kcfg, kafka.RouterOptions{}, log)
	if err != nil {
		return err
	}
	defer closeMW()
	newRunner := func() (*projections.Runner, error) {
		return projections.NewRunner(projections.RunnerConfig{
			Pool:  db.app,
			Codec: codec,
			Topic: kcfg.Topic,
			Subscribe: func(group string) (message.Subscriber, error) {
				return kafka.NewSubscriber(kcfg, group, log)
			},
			Middleware: mw,
			Permanent:  kafka.Permanent,
			Registerer: reg,
			Logger:     log,
		}, projectors()...)
	}
	runner, err := newRunner()
	if err != nil {
		return err
	}
	hub := realtime.NewHub(realtime.Options{}, reg)
	feed, err := realtime.NewFeed(realtime.FeedConfig{Pool: db.app, Kafka: kcfg, Hub: hub, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}

	vr := newVelociraptor(cfg, handler, keyring)
	api := httpapi.New(httpapi.Config{
		TrustedProxies: cfg.TrustedProxies,
		CORSOrigins:    cfg.CORSOrigins,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		ReadWait:       cfg.ReadWait,
		Version:        version,
		MetricsToken:   cfg.MetricsToken,
	}, httpapi.Deps{
		Commands:  handler,
		Reads:     db.app,
		Tokens:    tokens{issuer},
		MFATokens: tokens{issuer},
		WaitFor: func(ctx context.Context, projector string, tenant domain.TenantID, position int64, max time.Duration) error {
			return projections.WaitFor(ctx, db.app, projector, tenant, position, max)
		},
		Ready: map[string]httpapi.Checker{
			"postgres": func(ctx context.Context) error { return db.app.Ping(ctx) },
			"kafka":    func(ctx context.Context) error { return kafka.Ping(ctx, kcfg) },
		},
		AllowSelfRegistration: cfg.AllowSelfRegister,
		AuditIntegrity:        auditCheck,
		SIEM:                  siemDeps(handler, keyring, siemPolicy(cfg)),
		Velociraptor:          vr.deps(),
		Sessions: commands.SessionPolicy{Lifetime: cfg.SessionLifetime, IdleTimeout: cfg.SessionIdleTimeout,
			ReuseGrace: cfg.RefreshReuseGrace},
		Live: hub,
		TokenExpiry: func(token string) (time.Time, error) {
			c, err := issuer.Parse(token, auth.TokenAccess)
			return c.ExpiresAt, err
		},
	}, log, reg, reg)

	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	errc := make(chan error, 16) // at least one slot per background task, so none blocks
	background := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	background("relay", relay.Run)
	background("audit checkpoints", auditJob) // returns nil only: it logs and retries its failures
	// The projectors outlive a Kafka outage: a runner that stops on an error
	// (the broker unreachable at start, say) is replaced after a pause.
	background("projections", func(ctx context.Context) error {
		for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
			err := runner.Run(ctx)
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("projection runner stopped; restarting", slog.String("error", fmt.Sprint(err)), slog.Duration("after", delay))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			if runner, err = newRunner(); err != nil {
				return err
			}
		}
	})
	// Live notifications: this replica's sockets close (1001) when it stops.
	background("live notifications", func(ctx context.Context) error { defer hub.Close(); return feed.Run(ctx) })
	background("siem forwarders", runSIEMForwarders(cfg, handler, keyring, kcfg, log, reg))
	background("velociraptor jobs", vr.run(cfg, db.app, handler, kcfg, log))
	background("maintenance", maintenance(cfg, db, log))
	background("http", func(ctx context.Context) error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	log.Info("velocicompanion serving", slog.String("addr", ln.Addr().String()), slog.String("version", version),
		slog.Bool("embedded_kafka", cfg.embeddedKafka()), slog.String("kafka", strings.Join(kcfg.Brokers, ",")))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		log.Error("component failed; shutting down", slog.String("error", runErr.Error()))
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 15*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdownCtx)
	cancel()
	wg.Wait()
	log.Info("velocicompanion stopped")
	return runErr
}

// startKafka returns the Kafka configuration, starting the embedded broker
// when no external brokers are configured.
func startKafka(ctx context.Context, cfg config, log *slog.Logger) (kafka.Config, func(), error) {
	if !cfg.embeddedKafka() {
		return kafka.Config{Brokers: cfg.KafkaBrokers, Topic: cfg.KafkaTopic, Partitions: int32(cfg.KafkaPartitions),
			ClientID: "velocicompanion"}, func() {}, nil
	}
	host, portStr, err := net.SplitHostPort(cfg.KafkaEmbeddedAddr)
	if err != nil {
		return kafka.Config{}, nil, fmt.Errorf("VC_KAFKA_EMBEDDED_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return kafka.Config{}, nil, errors.New("VC_KAFKA_EMBEDDED_ADDR must be a loopback address")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return kafka.Config{}, nil, fmt.Errorf("VC_KAFKA_EMBEDDED_ADDR: %w", err)
	}
	dir := filepath.Join(cfg.DataDir, "kafka")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return kafka.Config{}, nil, err
	}
	cluster, err := kafka.Embedded(ctx, dir, port, cfg.KafkaTopic, int32(cfg.KafkaPartitions), kafka.KfakeOptions(log)...)
	if err != nil {
		return kafka.Config{}, nil, fmt.Errorf("embedded kafka: %w", err)
	}
	return cluster.Config("velocicompanion"), cluster.Close, nil
}

// jwtSecret returns the configured signing key or, for the embedded
// development setup, one generated once and kept in the data directory.
func jwtSecret(cfg config) ([]byte, error) {
	if cfg.JWTSecret != "" {
		return []byte(cfg.JWTSecret), nil
	}
	path := filepath.Join(cfg.DataDir, "jwt.key")
	if b, err := os.ReadFile(path); err == nil {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) < 32 {
			return nil, fmt.Errorf("%s is not a base64 key of at least 32 bytes", path)
		}
		return key, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// tokens adapts auth.Issuer to the HTTP API's Tokens.
type tokens struct{ issuer *auth.Issuer }

func (t tokens) IssueAccess(c httpapi.Claims) (string, time.Time, error) {
	tok, claims, err := t.issuer.IssueAccess(auth.Subject{User: c.User, Tenant: c.Tenant, Role: usersRole(c.Role),
		Session: c.Session, Epoch: c.Epoch})
	return tok, claims.ExpiresAt, err
}

func (t tokens) VerifyAccess(token string) (httpapi.Claims, error) {
	c, err := t.issuer.Parse(token, auth.TokenAccess)
	if err != nil {
		return httpapi.Claims{}, err
	}
	return httpapi.Claims{User: c.User, Tenant: c.Tenant, Role: string(c.Role), Session: c.Session, Epoch: c.Epoch}, nil
}

func (t tokens) IssueMFA(c httpapi.Claims) (string, time.Time, error) {
	tok, claims, err := t.issuer.IssueMFA(auth.Subject{User: c.User, Tenant: c.Tenant, Role: usersRole(c.Role), Epoch: c.Epoch})
	return tok, claims.ExpiresAt, err
}

func (t tokens) VerifyMFA(token string) (httpapi.MFAClaims, error) {
	c, err := t.issuer.Parse(token, auth.TokenMFA)
	if err != nil {
		return httpapi.MFAClaims{}, err
	}
	return httpapi.MFAClaims{
		Claims: httpapi.Claims{User: c.User, Tenant: c.Tenant, Role: string(c.Role), Session: c.Session, Epoch: c.Epoch},
		ID:     c.ID, ExpiresAt: c.ExpiresAt,
	}, nil
}

func usersRole(r string) users.Role { return users.Role(r) }

// masterKeyring returns the keyring that seals secrets at rest (TOTP
// secrets): VC_MASTER_KEY with VC_MASTER_KEY_OLD; in the embedded development
// set-up without one, a key generated once into the data directory. In
// production (external Kafka) without one it returns nil and logs a warning:
// setting up two-factor authentication then answers 503 mfa_unavailable.
func masterKeyring(cfg config, log *slog.Logger) (*atrest.Keyring, error) {
	current, source := cfg.MasterKey, "VC_MASTER_KEY"
	if current == "" {
		if !cfg.embeddedKafka() {
			log.Warn("VC_MASTER_KEY is not set: two-factor authentication is unavailable (setup answers 503 mfa_unavailable, " +
				"TOTP codes of enrolled users cannot be checked); set it to the base64 of 32 random bytes and back it up")
			return nil, nil
		}
		key, path, err := devMasterKey(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("development master key: %w", err)
		}
		current, source = key, path
	}
	kr, err := atrest.ParseKeyring(current, cfg.MasterKeyOld)
	if err != nil {
		return nil, fmt.Errorf("master key (%s): %w", source, err)
	}
	log.Info("secrets at rest are sealed with the master key", slog.String("key_id", kr.CurrentKeyID()), slog.String("source", source))
	return kr, nil
}

// devMasterKey returns, in base64, the master key kept in the data directory
// for the embedded development set-up, generating it on first use.
func devMasterKey(dataDir string) (string, string, error) {
	path := filepath.Join(dataDir, "master.key")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", path, err
	}
	key := make([]byte, atrest.KeyLen)
	if _, err := rand.Read(key); err != nil {
		return "", path, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", path, err
	}
	enc := base64.StdEncoding.EncodeToString(key)
	// O_EXCL: two servers starting on one data directory keep the first key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return devMasterKey(dataDir)
	}
	if err != nil {
		return "", path, err
	}
	if _, err := f.WriteString(enc + "\n"); err != nil {
		f.Close()
		return "", path, err
	}
	return enc, path, f.Close()
}

// totpEdge adapts adapters/totp to commands.OTP.
type totpEdge struct{}

func (totpEdge) Generate(issuer, account string) (commands.OTPSecret, error) {
	s, err := totp.Generate(issuer, account)
	return commands.OTPSecret{Base32: s.Base32, URI: s.URI, QRPNG: s.QRPNG}, err
}

func (totpEdge) Verify(secret, code string, now time.Time, lastUsedStep int64) (int64, bool) {
	return totp.Verify(secret, code, now, lastUsedStep)
}

func (totpEdge) NewRecoveryCodes(n int) ([]string, []string, error) { return totp.NewRecoveryCodes(n) }

func (totpEdge) MatchRecoveryCode(code string, hashes []string) (int, bool) {
	return totp.MatchRecoveryCode(code, hashes)
}
