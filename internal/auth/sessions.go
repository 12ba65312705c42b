package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/httpapi"
)

// session is what Redis holds under session:{sha256(token)}.
type session struct {
	UserID    string       `json:"uid"`
	Username  string       `json:"name"`
	Role      httpapi.Role `json:"role"`
	CreatedAt time.Time    `json:"created_at"`
}

// SessionKey is the Redis key (in the sessions store) of a session token:
// only the token's SHA-256 appears, so a Redis dump or MONITOR does not hand
// out live sessions.
func (s *Service) SessionKey(token string) string {
	return s.sessions.Key("session", tokenHashHex(token))
}

// Login checks username and password and starts a session, returning its
// token and when it expires unless used again. clientIP scopes the
// brute-force limiter. Errors: validation.Errors, ErrInvalidCredentials,
// *RateLimitedError, ErrSessionStoreDown.
func (s *Service) Login(ctx context.Context, username, password, clientIP string) (token string, expiresAt time.Time, user User, err error) {
	if s.opts.Limiter != nil {
		ok, retry := s.opts.Limiter.allowLogin(ctx, username, clientIP)
		if !ok {
			return "", time.Time{}, User{}, &RateLimitedError{RetryAfter: retry}
		}
	}
	user, err = s.checkPassword(ctx, username, password)
	if err != nil {
		return "", time.Time{}, User{}, err
	}
	if s.opts.Limiter != nil {
		// A good password clears the failures before it, so users who
		// mistyped a few times are not slowed down afterwards.
		s.opts.Limiter.resetLogin(ctx, username, clientIP)
	}
	token, err = newSecret()
	if err != nil {
		return "", time.Time{}, User{}, err
	}
	now := time.Now()
	v, _ := json.Marshal(session{UserID: user.ID, Username: user.Username, Role: user.Role, CreatedAt: now.UTC()})
	if err := s.sessions.Client().Set(ctx, s.SessionKey(token), v, s.opts.SessionTTL).Err(); err != nil {
		return "", time.Time{}, User{}, fmt.Errorf("%w: %v", ErrSessionStoreDown, err)
	}
	return token, now.Add(s.opts.SessionTTL), user, nil
}

// Logout ends the session of token. Ending an unknown or expired session is
// not an error.
func (s *Service) Logout(ctx context.Context, token string) error {
	if err := s.sessions.Client().Del(ctx, s.SessionKey(token)).Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrSessionStoreDown, err)
	}
	return nil
}

// authenticateSession resolves a session token and slides its expiry: GETEX
// reads the session and resets its TTL in one round trip.
func (s *Service) authenticateSession(ctx context.Context, token string) (httpapi.Principal, error) {
	v, err := s.sessions.Client().GetEx(ctx, s.SessionKey(token), s.opts.SessionTTL).Bytes()
	if errors.Is(err, redis.Nil) {
		return httpapi.Principal{}, httpapi.ErrUnauthenticated
	}
	if err != nil {
		return httpapi.Principal{}, fmt.Errorf("%w: %v", ErrSessionStoreDown, err)
	}
	var sess session
	if err := json.Unmarshal(v, &sess); err != nil || sess.Role.Rank() == 0 {
		return httpapi.Principal{}, httpapi.ErrUnauthenticated
	}
	return httpapi.Principal{ID: sess.UserID, Name: sess.Username, Kind: "user", Role: sess.Role}, nil
}

// Authenticate implements httpapi.Authenticator: the bearer token of r is a
// session token or an API key. Malformed, unknown, expired and revoked
// tokens are httpapi.ErrUnauthenticated; a session store outage is a 503.
func (s *Service) Authenticate(r *http.Request) (httpapi.Principal, error) {
	token, kind, err := ParseBearer(r.Header.Get("Authorization"))
	if err != nil {
		return httpapi.Principal{}, err
	}
	var p httpapi.Principal
	if kind == APIKeyToken {
		p, err = s.authenticateKey(r.Context(), token)
	} else {
		p, err = s.authenticateSession(r.Context(), token)
	}
	if errors.Is(err, ErrSessionStoreDown) {
		s.log.WarnContext(r.Context(), "cannot check session", "err", err)
		return httpapi.Principal{}, &httpapi.BadRequestError{Status: http.StatusServiceUnavailable,
			Message: "sessions cannot be checked right now; retry shortly or use an API key"}
	}
	return p, err
}
