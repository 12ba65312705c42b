package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/validation"
)

// User is an account that logs in with a password.
type User struct {
	ID        string       `json:"id"`
	Username  string       `json:"username"`
	Role      httpapi.Role `json:"role"`
	Disabled  bool         `json:"disabled"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
}

var usernamePattern = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// validateNewUser checks a user to be created, field by field.
func validateNewUser(username, password string, role httpapi.Role) error {
	var errs validation.Errors
	if !usernamePattern.MatchString(username) {
		errs.Add("username", "must be 1 to 64 letters, digits or . _ @ -")
	}
	switch n := utf8.RuneCountInString(password); {
	case !utf8.ValidString(password):
		errs.Add("password", "must be valid UTF-8")
	case n < MinPasswordLen:
		errs.Add("password", "must have at least %d characters", MinPasswordLen)
	case len(password) > MaxPasswordLen:
		errs.Add("password", "must be at most %d bytes", MaxPasswordLen)
	}
	if role.Rank() == 0 {
		errs.Add("role", "must be viewer, operator or admin")
	}
	return errs.Err()
}

// CreateUser adds a user with password hashed by argon2id. It returns a
// validation.Errors for bad input and ErrUserExists when the username is
// taken. The CLI's `trackops user create` calls it.
func (s *Service) CreateUser(ctx context.Context, username, password string, role httpapi.Role) (User, error) {
	if err := validateNewUser(username, password, role); err != nil {
		return User{}, err
	}
	hash, err := HashPassword(password, s.opts.Password)
	if err != nil {
		return User{}, err
	}
	u := User{ID: uuid.NewString(), Username: username, Role: role}
	err = s.pool.QueryRow(ctx, `INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, $4)
		RETURNING created_at, updated_at`, u.ID, username, hash, string(role)).Scan(&u.CreatedAt, &u.UpdatedAt)
	if postgres.IsUniqueViolation(err) {
		return User{}, ErrUserExists
	}
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// ListUsers returns every user, oldest first.
func (s *Service) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, username, role, disabled, created_at, updated_at FROM users ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) {
		var u User
		var role string
		err := row.Scan(&u.ID, &u.Username, &role, &u.Disabled, &u.CreatedAt, &u.UpdatedAt)
		u.Role = httpapi.Role(role)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// checkPassword returns the user whose username and password these are, or
// ErrInvalidCredentials. Unknown and disabled users cost one argon2id
// verification too, so response time does not reveal which usernames exist.
func (s *Service) checkPassword(ctx context.Context, username, password string) (User, error) {
	var u User
	var role, hash string
	err := s.pool.QueryRow(ctx, `SELECT id, username, role, disabled, password_hash, created_at, updated_at
		FROM users WHERE lower(username) = lower($1)`, username).
		Scan(&u.ID, &u.Username, &role, &u.Disabled, &hash, &u.CreatedAt, &u.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		_, _ = VerifyPassword(password, s.dummyHash)
		return User{}, ErrInvalidCredentials
	}
	if err != nil {
		return User{}, fmt.Errorf("look up user: %w", err)
	}
	u.Role = httpapi.Role(role)
	ok, err := VerifyPassword(password, hash)
	if err != nil {
		return User{}, fmt.Errorf("user %s: %w", u.ID, err)
	}
	if !ok || u.Disabled {
		return User{}, ErrInvalidCredentials
	}
	return u, nil
}
