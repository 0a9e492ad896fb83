package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/adapters/httpapi"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

// auditKeyFile is where the embedded development set-up keeps its generated
// audit signing key (base64 of an Ed25519 seed).
const auditKeyFile = "audit.key"

func (c config) validateAudit() error {
	var errs []error
	if c.AuditSigningKey != "" {
		k, err := base64.StdEncoding.DecodeString(c.AuditSigningKey)
		if err == nil {
			_, err = eventstore.NewCheckpointSigner(k)
		}
		if err != nil {
			errs = append(errs, errors.New("VC_AUDIT_SIGNING_KEY must be the base64 encoding of a 32-byte Ed25519 seed (or a 64-byte private key)"))
		}
	}
	for _, p := range c.AuditPublicKeys {
		if k, err := base64.StdEncoding.DecodeString(p); err != nil || len(k) != ed25519.PublicKeySize {
			errs = append(errs, fmt.Errorf("VC_AUDIT_PUBLIC_KEYS: %.12q… is not the base64 encoding of a 32-byte Ed25519 public key", p))
		}
	}
	return errors.Join(errs...)
}

// auditSigner returns the configured audit signing key or, for the embedded
// development set-up, one generated once and kept in the data directory (like
// the JWT key). With an external Kafka and no key it returns nil: no
// checkpoints are made.
func auditSigner(cfg config) (*eventstore.CheckpointSigner, error) {
	if cfg.AuditSigningKey != "" {
		k, err := base64.StdEncoding.DecodeString(cfg.AuditSigningKey)
		if err != nil {
			return nil, errors.New("VC_AUDIT_SIGNING_KEY is not base64")
		}
		return eventstore.NewCheckpointSigner(k)
	}
	if !cfg.embeddedKafka() {
		return nil, nil
	}
	path := filepath.Join(cfg.DataDir, auditKeyFile)
	if s, err := readAuditKeyFile(path); s != nil || err != nil {
		return s, err
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(seed)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return eventstore.NewCheckpointSigner(seed)
}

// readAuditKeyFile reads a generated key; a missing file is (nil, nil).
func readAuditKeyFile(path string) (*eventstore.CheckpointSigner, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s is not base64", path)
	}
	s, err := eventstore.NewCheckpointSigner(k)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// auditVerifyKeys returns the public keys that verify checkpoints: the
// signing key's (configured, or the development key if its file exists) and
// VC_AUDIT_PUBLIC_KEYS. It never generates a key.
func auditVerifyKeys(cfg config) (eventstore.CheckpointKeys, error) {
	var pubs []ed25519.PublicKey
	var signer *eventstore.CheckpointSigner
	var err error
	switch {
	case cfg.AuditSigningKey != "":
		signer, err = auditSigner(cfg)
	case cfg.embeddedKafka():
		signer, err = readAuditKeyFile(filepath.Join(cfg.DataDir, auditKeyFile))
	}
	if err != nil {
		return nil, err
	}
	if signer != nil {
		pubs = append(pubs, signer.PublicKey())
	}
	for _, p := range cfg.AuditPublicKeys {
		k, err := base64.StdEncoding.DecodeString(p)
		if err != nil || len(k) != ed25519.PublicKeySize {
			return nil, errors.New("VC_AUDIT_PUBLIC_KEYS holds a key that is not 32 bytes of base64")
		}
		pubs = append(pubs, ed25519.PublicKey(k))
	}
	return eventstore.NewCheckpointKeys(pubs...), nil
}

// auditWiring returns the background job that makes the signed checkpoints
// (nil without a signing key) and the integrity check of the HTTP API.
func auditWiring(cfg config, store *eventstore.Store, log *slog.Logger, reg prometheus.Registerer) (func(context.Context) error, httpapi.IntegrityFunc, error) {
	signer, err := auditSigner(cfg)
	if err != nil {
		return nil, nil, err
	}
	keys, err := auditVerifyKeys(cfg)
	if err != nil {
		return nil, nil, err
	}
	if signer != nil {
		keys[signer.KeyID()] = signer.PublicKey()
	}
	check := eventstore.NewIntegrityChecker(store, keys, cfg.AuditIntegrityRecheck).Check
	if signer == nil {
		log.Warn("no VC_AUDIT_SIGNING_KEY: signed audit checkpoints are not made; set it to make verify detect removed and reordered events")
		return func(context.Context) error { return nil }, check, nil
	}
	cp := eventstore.NewCheckpointer(store, signer, eventstore.CheckpointerOptions{
		Interval: cfg.AuditCheckpointInterval, Logger: log, Registerer: reg,
	})
	return cp.Run, check, nil
}

// verifyCheckpoints verifies every tenant (or one) against its signed
// checkpoints, prints the first break of each broken tenant and a summary,
// and returns an error if anything broke.
func verifyCheckpoints(ctx context.Context, cfg config, store *eventstore.Store, tenant domain.TenantID, stdout io.Writer) error {
	keys, err := auditVerifyKeys(cfg)
	if err != nil {
		return err
	}
	tenants := []domain.TenantID{tenant}
	if tenant == "" {
		if tenants, err = store.AuditTenants(ctx); err != nil {
			return err
		}
	}
	var checkpoints, broken int
	var anchored, unanchored int64
	var unsigned []domain.TenantID
	for _, t := range tenants {
		rep, err := store.VerifyCheckpoints(ctx, t, keys, eventstore.VerifyOptions{})
		if err != nil {
			return err
		}
		checkpoints += rep.Verified
		anchored += rep.Events
		unanchored += rep.Unanchored
		if rep.Checkpoints == 0 && rep.Unanchored > 0 {
			unsigned = append(unsigned, t)
		}
		if !rep.OK() {
			broken++
			fmt.Fprintf(stdout, "BREAK: tenant %s: %s\n", t, rep.Break)
		}
	}
	fmt.Fprintf(stdout, "verified %d signed audit checkpoints of %d tenants: %d events anchored, %d after the latest checkpoints\n",
		checkpoints, len(tenants), anchored, unanchored)
	if len(unsigned) > 0 {
		fmt.Fprintf(stdout, "WARNING: %d tenants have events but no checkpoint yet (is the server running with an audit signing key?)\n", len(unsigned))
	}
	if broken > 0 {
		return fmt.Errorf("verify: %d tenants fail their signed audit checkpoints", broken)
	}
	fmt.Fprintln(stdout, "OK: every signed audit checkpoint verifies")
	return nil
}
