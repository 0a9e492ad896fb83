package httpapi

import (
	"encoding/base64"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

// Two-factor sign-in and the TOTP routes.
//
// A sign-in of an account with a second factor takes two requests. The
// password step (POST /api/auth/login) answers {"mfa_required": true,
// "mfa_token", "methods"} and no access or refresh token; the MFA token is a
// JWT of type "mfa", valid for minutes, that authenticates nothing else (the
// bearer check wants type "access"). POST /api/auth/login/mfa exchanges it,
// once, with a code, for the tokens. As the original API did, the code may
// also come with the password: the JSON field totp_code, or the first word of
// the OAuth2 form's scope.

// MFATokens issues and verifies the tokens of a sign-in's second step;
// adapters/auth implements it with tokens of type "mfa".
type MFATokens interface {
	IssueMFA(c Claims) (token string, expires time.Time, err error)
	VerifyMFA(token string) (MFAClaims, error)
}

// MFAClaims are what a verified MFA token asserts: the identity of the
// password step (with its epoch), its id and its end.
type MFAClaims struct {
	Claims
	ID        string // jti: spent when exchanged
	ExpiresAt time.Time
}

var (
	errMFATokenRequired = domain.Invalid("mfa_token_required", "mfa_token is required")
	errMFATokenBad      = domain.Unauthenticated("mfa_token_invalid", "the sign-in step is no longer valid; sign in again")
	errOneCode          = domain.Invalid("one_code_only", "give either code or recovery_code, not both")
)

// mfaRequiredResponse answers the password step of an account with a second
// factor.
type mfaRequiredResponse struct {
	MFARequired bool     `json:"mfa_required" doc:"always true: send the mfa_token with a code to POST /api/auth/login/mfa"`
	MFAToken    string   `json:"mfa_token" doc:"single use, valid for expires_in seconds, and for nothing but POST /api/auth/login/mfa"`
	Methods     []string `json:"methods" doc:"the second factors the account accepts: totp, and recovery_code while any are left"`
	ExpiresIn   int64    `json:"expires_in" doc:"lifetime of the mfa_token in seconds"`
}

// mfaLoginRequest is the body of POST /api/auth/login/mfa.
type mfaLoginRequest struct {
	MFAToken     string `json:"mfa_token"`
	Code         string `json:"code,omitempty" doc:"the authenticator's six-digit code"`
	RecoveryCode string `json:"recovery_code,omitempty" doc:"one of the recovery codes, instead of code; each works once"`
}

// totpSetupResponse is a new TOTP secret, shown once.
type totpSetupResponse struct {
	Secret      string    `json:"secret" doc:"the base32 secret, for typing into an authenticator app; shown only in this response"`
	OtpauthURI  string    `json:"otpauth_uri" doc:"otpauth://totp/ key URI with issuer and account"`
	QRPNGBase64 string    `json:"qr_png_base64" doc:"the otpauth URI as a PNG QR code, base64"`
	ExpiresAt   time.Time `json:"expires_at" doc:"confirm the setup with POST /api/auth/2fa/verify before this time"`
}

// totpCodeRequest carries a code from the authenticator (or, where the route
// says so, a recovery code).
type totpCodeRequest struct {
	Code string `json:"code"`
}

// totpDisableRequest is the body of POST /api/auth/2fa/disable.
type totpDisableRequest struct {
	Password string `json:"password"`
	Code     string `json:"code" doc:"a current code of the authenticator, or a recovery code"`
}

// mfaStatusResponse answers a change of the second factor.
type mfaStatusResponse struct {
	Enabled       bool     `json:"enabled"`
	RecoveryCodes []string `json:"recovery_codes,omitempty" doc:"ten single-use recovery codes, shown only in this response; store them safely"`
	Version       int64    `json:"version"`
	Position      int64    `json:"position,omitempty"`
}

// recoveryCodesResponse answers a regeneration of the recovery codes.
type recoveryCodesResponse struct {
	RecoveryCodes []string `json:"recovery_codes" doc:"ten new single-use recovery codes, shown only in this response; the previous ones no longer work"`
	Version       int64    `json:"version"`
	Position      int64    `json:"position,omitempty"`
}

// failThrottled is fail, with Retry-After when err says when to retry.
func failThrottled(c *gin.Context, err error) {
	if after, ok := commands.RetryAfter(err); ok {
		c.Header("Retry-After", strconv.FormatInt(int64(math.Ceil(after.Seconds())), 10))
	}
	fail(c, err)
}

// signInWithPassword is POST /api/auth/login once the request was read: the
// password step, then the session, the code given with it, or the MFA token.
func (s *Server) signInWithPassword(c *gin.Context, username, password, code string) {
	ctx := c.Request.Context()
	md := meta(c)
	step, err := s.deps.Commands.BeginSignIn(ctx, commands.Login{Username: username, Password: password, Meta: md})
	if err != nil {
		failThrottled(c, err)
		return
	}
	if !step.MFARequired() {
		sess, err := s.deps.Commands.StartSession(ctx, commands.StartSession{Identity: step.Identity,
			Method: users.MethodPassword, Policy: s.deps.Sessions, Meta: md})
		if err != nil {
			fail(c, err)
			return
		}
		s.respondTokens(c, sess)
		return
	}
	if code != "" {
		sess, err := s.deps.Commands.CompleteSignIn(ctx, commands.CompleteSignIn{Identity: step.Identity,
			Factor: commands.CodeFactor(code), Policy: s.deps.Sessions, Meta: md})
		if err != nil {
			failThrottled(c, err)
			return
		}
		s.respondTokens(c, sess)
		return
	}
	if s.deps.MFATokens == nil {
		fail(c, commands.ErrMFAUnavailable)
		return
	}
	id := step.Identity
	token, exp, err := s.deps.MFATokens.IssueMFA(Claims{User: id.User, Tenant: id.Tenant, Role: string(id.Role), Epoch: id.Epoch})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, mfaRequiredResponse{MFARequired: true, MFAToken: token, Methods: step.Factors,
		ExpiresIn: int64(time.Until(exp).Seconds())})
}

// scopeCode returns the code the original API's clients send in the OAuth2
// form's scope: its first word, if it has the shape of a code.
func scopeCode(scope string) string {
	if f := strings.Fields(scope); len(f) > 0 && commands.LooksLikeCode(f[0]) {
		return f[0]
	}
	return ""
}

func (s *Server) loginMFA(c *gin.Context) {
	var req mfaLoginRequest
	if !bindJSON(c, &req) {
		return
	}
	var factor commands.SecondFactor
	switch {
	case req.MFAToken == "":
		fail(c, errMFATokenRequired)
		return
	case req.Code != "" && req.RecoveryCode != "":
		fail(c, errOneCode)
		return
	case req.RecoveryCode != "":
		factor = commands.RecoveryCode(req.RecoveryCode)
	case req.Code != "":
		factor = commands.CodeFactor(req.Code)
	default:
		fail(c, commands.ErrCodeRequired)
		return
	}
	if s.deps.MFATokens == nil {
		fail(c, commands.ErrMFAUnavailable)
		return
	}
	claims, err := s.deps.MFATokens.VerifyMFA(req.MFAToken)
	if err != nil {
		fail(c, errMFATokenBad)
		return
	}
	sess, err := s.deps.Commands.CompleteSignIn(c.Request.Context(), commands.CompleteSignIn{
		Identity: commands.Identity{User: claims.User, Tenant: claims.Tenant, Role: users.Role(claims.Role), Epoch: claims.Epoch},
		TokenID:  claims.ID, TokenExpiresAt: claims.ExpiresAt, Factor: factor, Policy: s.deps.Sessions, Meta: meta(c),
	})
	if err != nil {
		failThrottled(c, err)
		return
	}
	s.respondTokens(c, sess)
}

func (s *Server) setupTOTP(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	e, err := s.deps.Commands.SetupTOTP(c.Request.Context(), commands.SetupTOTP{Tenant: p.Tenant, User: p.User, Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, totpSetupResponse{Secret: e.Secret, OtpauthURI: e.URI,
		QRPNGBase64: base64.StdEncoding.EncodeToString(e.QRPNG), ExpiresAt: e.ExpiresAt.UTC()})
}

func (s *Server) verifyTOTP(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	var req totpCodeRequest
	if !bindJSON(c, &req) {
		return
	}
	res, codes, err := s.deps.Commands.ConfirmTOTP(c.Request.Context(), commands.ConfirmTOTP{
		Tenant: p.Tenant, User: p.User, Code: req.Code, Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(res.Version))
	c.JSON(http.StatusOK, mfaStatusResponse{Enabled: true, RecoveryCodes: codes, Version: res.Version, Position: res.Position})
}

func (s *Server) disableTOTP(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	var req totpDisableRequest
	if !bindJSON(c, &req) {
		return
	}
	res, err := s.deps.Commands.DisableTOTP(c.Request.Context(), commands.DisableTOTP{
		Tenant: p.Tenant, User: p.User, Session: p.Session, Password: req.Password, Code: req.Code,
		By: p.Actor(), Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(res.Version))
	c.JSON(http.StatusOK, mfaStatusResponse{Enabled: false, Version: res.Version, Position: res.Position})
}

func (s *Server) regenerateRecoveryCodes(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	var req totpCodeRequest
	if !bindJSON(c, &req) {
		return
	}
	res, codes, err := s.deps.Commands.RegenerateRecoveryCodes(c.Request.Context(), commands.RegenerateRecoveryCodes{
		Tenant: p.Tenant, User: p.User, Code: req.Code, Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(res.Version))
	c.JSON(http.StatusOK, recoveryCodesResponse{RecoveryCodes: codes, Version: res.Version, Position: res.Position})
}
