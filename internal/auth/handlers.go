package auth

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

// Routes are the authentication and account endpoints with the least role
// each needs. Login is public (the router's per-address limit and the login
// limiter guard it); logout and me need any role; keys and users are admin.
func (s *Service) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodPost, Pattern: "/api/v1/auth/login", Role: httpapi.RolePublic, Handler: s.handleLogin},
		{Method: http.MethodPost, Pattern: "/api/v1/auth/logout", Role: httpapi.RoleViewer, Handler: s.handleLogout},
		{Method: http.MethodGet, Pattern: "/api/v1/auth/me", Role: httpapi.RoleViewer, Handler: s.handleMe},
		{Method: http.MethodGet, Pattern: "/api/v1/auth/apikeys", Role: httpapi.RoleAdmin, Handler: s.handleListKeys},
		{Method: http.MethodPost, Pattern: "/api/v1/auth/apikeys", Role: httpapi.RoleAdmin, Handler: s.handleCreateKey},
		{Method: http.MethodDelete, Pattern: "/api/v1/auth/apikeys/{id}", Role: httpapi.RoleAdmin, Handler: s.handleRevokeKey},
		{Method: http.MethodGet, Pattern: "/api/v1/users", Role: httpapi.RoleAdmin, Handler: s.handleListUsers},
		{Method: http.MethodPost, Pattern: "/api/v1/users", Role: httpapi.RoleAdmin, Handler: s.handleCreateUser},
	}
}

// LoginRequest is the body of POST /api/v1/auth/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse is the answer to a successful login.
type LoginResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// DecodeLoginRequest reads and checks a login body strictly. Its errors are
// *httpapi.BadRequestError or validation.Errors, both 4xx.
func DecodeLoginRequest(r *http.Request) (LoginRequest, error) {
	var req LoginRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		return LoginRequest{}, err
	}
	var errs validation.Errors
	if !usernamePattern.MatchString(req.Username) {
		errs.Add("username", "must be 1 to 64 letters, digits or . _ @ -")
	}
	if req.Password == "" {
		errs.Add("password", "is required")
	} else if len(req.Password) > MaxPasswordLen || !utf8.ValidString(req.Password) {
		errs.Add("password", "must be valid UTF-8 of at most %d bytes", MaxPasswordLen)
	}
	return req, errs.Err()
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeLoginRequest(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	// The audit row names the account tried, whether or not it exists.
	httpapi.SetPrincipal(w, httpapi.Principal{Name: req.Username, Kind: "user"})
	token, expires, user, err := s.Login(r.Context(), req.Username, req.Password, httpapi.ClientIP(r))
	var limited *RateLimitedError
	switch {
	case errors.As(err, &limited):
		secs := max(1, int(math.Ceil(limited.RetryAfter.Seconds())))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		httpapi.WriteProblem(w, r, http.StatusTooManyRequests, "too many login attempts for this account from this address; retry in "+strconv.Itoa(secs)+" s")
	case errors.Is(err, ErrInvalidCredentials):
		httpapi.WriteProblem(w, r, http.StatusUnauthorized, err.Error())
	case errors.Is(err, ErrSessionStoreDown):
		w.Header().Set("Retry-After", "5")
		httpapi.WriteProblem(w, r, http.StatusServiceUnavailable, "sessions cannot be created right now; retry shortly")
	case err != nil:
		httpapi.WriteError(w, r, err)
	default:
		httpapi.SetPrincipal(w, httpapi.Principal{ID: user.ID, Name: user.Username, Kind: "user", Role: user.Role})
		httpapi.WriteJSON(w, http.StatusOK, LoginResponse{Token: token, ExpiresAt: expires.UTC()})
	}
}

func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) {
	token, kind, err := ParseBearer(r.Header.Get("Authorization"))
	if err != nil || kind != SessionToken {
		httpapi.WriteProblem(w, r, http.StatusBadRequest, "logout ends a session; revoke API keys with DELETE /api/v1/auth/apikeys/{id}")
		return
	}
	if err := s.Logout(r.Context(), token); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// MeResponse describes the caller.
type MeResponse struct {
	ID   string       `json:"id"`
	Name string       `json:"name"`
	Kind string       `json:"kind"`
	Role httpapi.Role `json:"role"`
}

func (s *Service) handleMe(w http.ResponseWriter, r *http.Request) {
	p := httpapi.PrincipalFrom(r.Context())
	httpapi.WriteJSON(w, http.StatusOK, MeResponse{ID: p.ID, Name: p.Name, Kind: p.Kind, Role: p.Role})
}

func (s *Service) handleListKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.ListAPIKeys(r.Context())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"items": keys})
}

// CreateKeyRequest is the body of POST /api/v1/auth/apikeys.
type CreateKeyRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// CreatedKey is an API key as shown once, with its secret.
type CreatedKey struct {
	APIKey
	Key string `json:"key"`
}

func (s *Service) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	var req CreateKeyRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	role, _ := httpapi.ParseRole(req.Role)
	k, plain, err := s.IssueAPIKey(r.Context(), req.Name, role, httpapi.PrincipalFrom(r.Context()).Actor())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, CreatedKey{APIKey: k, Key: plain})
}

func (s *Service) handleRevokeKey(w http.ResponseWriter, r *http.Request) {
	err := s.RevokeAPIKey(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		httpapi.WriteProblem(w, r, http.StatusNotFound, "no API key has this id")
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleListUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.ListUsers(r.Context())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"items": users})
}

// CreateUserRequest is the body of POST /api/v1/users.
type CreateUserRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

func (s *Service) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	var req CreateUserRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	role, _ := httpapi.ParseRole(req.Role)
	u, err := s.CreateUser(r.Context(), req.Username, req.Password, role)
	if errors.Is(err, ErrUserExists) {
		httpapi.WriteProblem(w, r, http.StatusConflict, "username already exists")
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, u)
}
