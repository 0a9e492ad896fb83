package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"velocicompanion/adapters/siem"

	atrest "velocicompanion/adapters/secrets"
)

// config is every setting of the server. Each has an environment variable
// VC_<NAME> and a flag --<name> that overrides it.
type config struct {
	HTTPAddr          string
	DatabaseURL       string
	DatabaseSchema    string
	KafkaBrokers      []string
	KafkaTopic        string
	KafkaPartitions   int
	KafkaEmbeddedAddr string
	DataDir           string
	JWTSecret         string
	JWTIssuer         string
	JWTAudience       string
	AccessTokenTTL    time.Duration
	MasterKey         string
	MasterKeyOld      string
	TOTPIssuer        string
	TrustedProxies    []string
	CORSOrigins       []string
	MaxBodyBytes      int64
	LogLevel          string
	AllowSelfRegister bool
	PublicBaseURL     string
	ReadWait          time.Duration
	SMTPHost          string
	SMTPPort          int
	SMTPUsername      string
	SMTPPassword      string
	SMTPFrom          string
	SMTPTLS           string
	SMTPCAFile        string
	SMTPTimeout       time.Duration
	// Audit tamper evidence.
	AuditSigningKey         string
	AuditPublicKeys         []string
	AuditCheckpointInterval time.Duration
	AuditIntegrityRecheck   time.Duration
	// Sessions and refresh tokens.
	SessionLifetime    time.Duration
	SessionIdleTimeout time.Duration
	RefreshReuseGrace  time.Duration
	// Sign-in throttling per client address.
	LoginIPMaxFailures int
	LoginIPWindow      time.Duration
	// SIEM forwarding.
	SIEMForward         bool
	SIEMAllowedNetworks []netip.Prefix
	SIEMAttempts        int
	SIEMDeadLetterTopic string
	SIEMRefresh         time.Duration
	// Velociraptor integration.
	VRJobs            bool
	VRSyncInterval    time.Duration
	VRPoll            time.Duration
	VRAllowedNetworks []netip.Prefix
	// MetricsToken guards GET /metrics when set.
	MetricsToken string
	// Maintenance: pruning what expired (maintain.go).
	MaintenanceInterval    time.Duration
	ProjectorSeenRetention time.Duration
}

// embeddedKafka reports whether the server runs its own in-process broker.
func (c config) embeddedKafka() bool { return len(c.KafkaBrokers) == 0 }

type setting struct {
	name, def, usage string
	set              func(string) error
}

func settings(c *config) []setting {
	str := func(p *string) func(string) error { return func(v string) error { *p = v; return nil } }
	list := func(p *[]string) func(string) error {
		return func(v string) error {
			*p = nil
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					*p = append(*p, s)
				}
			}
			return nil
		}
	}
	dur := func(p *time.Duration) func(string) error {
		return func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("must be a positive duration such as 15m")
			}
			*p = d
			return nil
		}
	}
	integer := func(p *int64) func(string) error {
		return func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return fmt.Errorf("must be a positive integer")
			}
			*p = n
			return nil
		}
	}
	boolean := func(p *bool) func(string) error {
		return func(v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("must be true or false")
			}
			*p = b
			return nil
		}
	}
	var partitions, smtpPort, ipFailures int64
	return []setting{
		{"http-addr", ":8000", "address the HTTP API listens on", str(&c.HTTPAddr)},
		{"database-url", "postgres://postgres@127.0.0.1:5432/velocicompanion?sslmode=disable", "PostgreSQL URL (DATABASE_URL is also read)", str(&c.DatabaseURL)},
		{"database-schema", "public", "PostgreSQL schema holding the event store and read models", str(&c.DatabaseSchema)},
		{"kafka-brokers", "", "comma-separated Kafka bootstrap brokers; empty runs the embedded in-process broker", list(&c.KafkaBrokers)},
		{"kafka-topic", "velocicompanion.events", "events topic", str(&c.KafkaTopic)},
		{"kafka-partitions", "8", "partitions of the events topic when the embedded broker creates it", func(v string) error {
			if err := integer(&partitions)(v); err != nil {
				return err
			}
			c.KafkaPartitions = int(partitions)
			return nil
		}},
		{"kafka-embedded-addr", "127.0.0.1:19092", "listen address of the embedded broker (loopback only)", str(&c.KafkaEmbeddedAddr)},
		{"data-dir", "./.data", "directory for the embedded broker's data and the generated development keys (JWT, master key)", str(&c.DataDir)},
		{"jwt-secret", "", "HMAC key for access tokens, at least 32 bytes; generated into the data dir when unset with the embedded broker", str(&c.JWTSecret)},
		{"jwt-issuer", "velocicompanion", "iss claim of access tokens", str(&c.JWTIssuer)},
		{"jwt-audience", "velocicompanion-api", "aud claim of access tokens", str(&c.JWTAudience)},
		{"access-token-ttl", "15m", "lifetime of access tokens", dur(&c.AccessTokenTTL)},
		{"master-key", "", "base64 of 32 bytes: AES-256-GCM key for secrets at rest (TOTP secrets); generated into the data dir when unset with the embedded broker", str(&c.MasterKey)},
		{"master-key-old", "", "comma-separated base64 master keys retired by a rotation: they only open secrets sealed before it", str(&c.MasterKeyOld)},
		{"totp-issuer", "VelociCompanion", "the name authenticator apps show for this installation's two-factor codes", str(&c.TOTPIssuer)},
		{"login-ip-max-failures", "20", "failed sign-ins one client address may make within --login-ip-window before it is refused (429) until the window ends", func(v string) error {
			if err := integer(&ipFailures)(v); err != nil {
				return err
			}
			c.LoginIPMaxFailures = int(ipFailures)
			return nil
		}},
		{"login-ip-window", "5m", "the window of --login-ip-max-failures, from an address's first failure", dur(&c.LoginIPWindow)},
		{"trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is trusted; empty trusts none", list(&c.TrustedProxies)},
		{"cors-origins", "", "comma-separated browser origins allowed to call the API", list(&c.CORSOrigins)},
		{"max-body-bytes", "1048576", "largest accepted request body", integer(&c.MaxBodyBytes)},
		{"log-level", "info", "debug, info, warn or error", str(&c.LogLevel)},
		{"allow-self-registration", "false", "let anonymous visitors register viewer accounts in an existing tenant", boolean(&c.AllowSelfRegister)},
		{"public-base-url", "http://localhost:8000", "base URL used in links sent by email", str(&c.PublicBaseURL)},
		{"read-wait", "2s", "longest wait of a query for its min_position", dur(&c.ReadWait)},
		{"smtp-host", "", "SMTP server for password-reset and verification mail; empty sends none", str(&c.SMTPHost)},
		{"smtp-port", "587", "SMTP port", func(v string) error {
			if err := integer(&smtpPort)(v); err != nil {
				return err
			}
			c.SMTPPort = int(smtpPort)
			return nil
		}},
		{"smtp-username", "", "SMTP login (sent only inside TLS)", str(&c.SMTPUsername)},
		{"smtp-password", "", "SMTP password", str(&c.SMTPPassword)},
		{"smtp-from", "VelociCompanion <no-reply@localhost>", "sender of the mails", str(&c.SMTPFrom)},
		{"smtp-tls", "starttls", "starttls (required), tls (implicit) or none (loopback test servers only)", str(&c.SMTPTLS)},
		{"smtp-ca-file", "", "PEM file of the CAs that verify the SMTP server instead of the system's", str(&c.SMTPCAFile)},
		{"smtp-timeout", "30s", "longest time one mail may take to send", dur(&c.SMTPTimeout)},
		{"audit-signing-key", "", "base64 of a 32-byte Ed25519 seed that signs the audit checkpoints; generated into the data dir when unset with the embedded broker", str(&c.AuditSigningKey)},
		{"audit-public-keys", "", "comma-separated base64 Ed25519 public keys that also verify audit checkpoints (keys rotated out, or verifying without the signing key)", list(&c.AuditPublicKeys)},
		{"audit-checkpoint-interval", "1m", "how often the signed audit checkpoints are made", dur(&c.AuditCheckpointInterval)},
		{"audit-integrity-recheck", "10m", "how often GET /api/audit/integrity verifies a tenant's whole history again; new checkpoints are verified as they come", dur(&c.AuditIntegrityRecheck)},
		{"session-lifetime", "720h", "absolute lifetime of a sign-in session; refreshing never extends it", dur(&c.SessionLifetime)},
		{"session-idle-timeout", "24h", "a session whose tokens were not refreshed for this long ends", dur(&c.SessionIdleTimeout)},
		{"refresh-reuse-grace", "10s", "a refresh token presented again this soon after its exchange, before its successor was used, is refused without ending the session (two tabs racing); 0s treats every second use as a replay", func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Minute {
				return fmt.Errorf("must be a duration from 0s to 1m")
			}
			c.RefreshReuseGrace = d
			return nil
		}},
		{"siem-allowed-networks", "", "comma-separated private CIDRs SIEM destinations may reach; loopback, private, link-local and other internal addresses are refused otherwise", networks(&c.SIEMAllowedNetworks)},
		{"siem-forward", "true", "run the SIEM forwarders on this replica (each destination is its own Kafka consumer group siem.v1.<id>)", boolean(&c.SIEMForward)},
		{"siem-attempts", "8", "delivery attempts of one event to a SIEM destination, with exponential back-off, before it goes to the dead-letter topic", func(v string) error {
			var n int64
			if err := integer(&n)(v); err != nil {
				return err
			}
			c.SIEMAttempts = int(n)
			return nil
		}},
		{"siem-dead-letter-topic", "", "Kafka topic of events a SIEM destination gave up on; empty uses the events topic's poison topic (<topic>.poison)", str(&c.SIEMDeadLetterTopic)},
		{"siem-refresh", "10s", "how often the forwarders pick up added, changed and removed SIEM destinations", dur(&c.SIEMRefresh)},
		{"metrics-token", "", "bearer token that GET /metrics asks for; empty serves the metrics to anyone", str(&c.MetricsToken)},
		{"velociraptor-jobs", "true", "run the Velociraptor process manager and client sync (one replica at a time leads them)", boolean(&c.VRJobs)},
		{"velociraptor-sync-interval", "5m", "how often each tenant's Velociraptor clients are synced into its hosts", dur(&c.VRSyncInterval)},
		{"velociraptor-poll", "5s", "how often requested and running Velociraptor collections and hunts are looked at", dur(&c.VRPoll)},
		{"velociraptor-allowed-networks", "", "comma-separated private CIDRs that tenants' Velociraptor servers may be reached at (others are refused)", networks(&c.VRAllowedNetworks)},
		{"maintenance-interval", "1h", "how often one replica deletes ended sessions, spent tokens and stale throttle counters past their retention; 0 turns it off", durOrOff(&c.MaintenanceInterval)},
		{"projector-seen-retention", "0", "delete projector_seen rows applied longer ago than this; must exceed the events topic's retention.ms; 0 keeps them all (a topic that keeps its records forever)", durOrOff(&c.ProjectorSeenRetention)},
	}
}

// networks parses a comma-separated list of CIDRs into dst.
func networks(dst *[]netip.Prefix) func(string) error {
	return func(v string) error {
		var raw []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				raw = append(raw, s)
			}
		}
		nets, err := siem.ParseNetworks(raw)
		if err != nil {
			return err
		}
		*dst = nets
		return nil
	}
}

// envName is the environment variable of a setting.
func envName(name string) string { return "VC_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) }

// loadConfig applies defaults, then the environment, then flags.
func loadConfig(fs *flag.FlagSet, args []string) (config, error) {
	var c config
	all := settings(&c)
	for _, s := range all {
		v := s.def
		if e, ok := os.LookupEnv(envName(s.name)); ok {
			v = e
		} else if s.name == "database-url" && os.Getenv("DATABASE_URL") != "" {
			v = os.Getenv("DATABASE_URL")
		}
		if err := s.set(v); err != nil {
			return c, fmt.Errorf("%s: %w", envName(s.name), err)
		}
	}
	for _, s := range all {
		s := s
		fs.Func(s.name, s.usage+" (env "+envName(s.name)+", default "+strconv.Quote(s.def)+")", func(v string) error {
			return s.set(v)
		})
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	if !c.embeddedKafka() && len(c.JWTSecret) < 32 {
		errs = append(errs, errors.New("VC_JWT_SECRET must be set to at least 32 bytes when an external Kafka is used (production)"))
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		errs = append(errs, errors.New("VC_JWT_SECRET must be at least 32 bytes"))
	}
	switch {
	case c.MasterKey != "":
		if _, err := atrest.ParseKeyring(c.MasterKey, c.MasterKeyOld); err != nil {
			errs = append(errs, fmt.Errorf("VC_MASTER_KEY / VC_MASTER_KEY_OLD: %w", err))
		}
	case strings.TrimSpace(c.MasterKeyOld) != "" && !c.embeddedKafka():
		errs = append(errs, errors.New("VC_MASTER_KEY_OLD needs VC_MASTER_KEY, the key that seals from now on"))
	}
	if c.TOTPIssuer == "" || len(c.TOTPIssuer) > 128 || strings.Contains(c.TOTPIssuer, ":") ||
		strings.ContainsFunc(c.TOTPIssuer, unicode.IsControl) {
		errs = append(errs, errors.New("VC_TOTP_ISSUER must be 1 to 128 bytes without a colon or control character"))
	}
	if c.SessionIdleTimeout < c.AccessTokenTTL || c.SessionLifetime < c.SessionIdleTimeout {
		errs = append(errs, errors.New("sessions: VC_ACCESS_TOKEN_TTL <= VC_SESSION_IDLE_TIMEOUT <= VC_SESSION_LIFETIME must hold"))
	}
	if err := c.validateAudit(); err != nil {
		errs = append(errs, err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, errors.New("VC_LOG_LEVEL must be debug, info, warn or error"))
	}
	return errors.Join(errs...)
}
