package main

import (
	"context"
	"strings"
	"time"

	"velocicompanion/adapters/mail"
)

// mailer adapts the SMTP sender and the identity mail templates to
// commands.Mailer.
type mailer struct {
	sender    *mail.Sender
	templates *mail.Templates
}

// newMailer returns nil when no SMTP host is configured: recovery mails are
// then not sent, which the server logs.
func newMailer(cfg config) (*mailer, error) {
	if cfg.SMTPHost == "" {
		return nil, nil
	}
	sender, err := mail.NewSender(mail.Config{
		Host: cfg.SMTPHost, Port: cfg.SMTPPort, Username: cfg.SMTPUsername, Password: cfg.SMTPPassword,
		From: cfg.SMTPFrom, TLSMode: mail.TLSMode(cfg.SMTPTLS), CAFile: cfg.SMTPCAFile, Timeout: cfg.SMTPTimeout,
	})
	if err != nil {
		return nil, err
	}
	templates, err := mail.NewTemplates(strings.TrimRight(cfg.PublicBaseURL, "/"), "")
	if err != nil {
		return nil, err
	}
	return &mailer{sender: sender, templates: templates}, nil
}

func (m *mailer) SendPasswordReset(ctx context.Context, to, name, token string, validFor time.Duration) error {
	msg, err := m.templates.PasswordReset(mail.Recipient{Address: to, Name: name}, token, validFor)
	if err != nil {
		return err
	}
	return m.sender.Send(ctx, msg)
}

func (m *mailer) SendEmailVerification(ctx context.Context, to, name, token string, validFor time.Duration) error {
	msg, err := m.templates.EmailVerification(mail.Recipient{Address: to, Name: name}, token, validFor)
	if err != nil {
		return err
	}
	return m.sender.Send(ctx, msg)
}
