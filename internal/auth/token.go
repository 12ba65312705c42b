package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/trackops/trackops/internal/httpapi"
)

// APIKeyPrefix starts every API key, so keys are recognisable in
// configuration files and by secret scanners, and never taken for session
// tokens.
const APIKeyPrefix = "tok_"

// secretBytes is the entropy of session tokens and API keys.
const secretBytes = 32

// encodedSecretLen is the length of 32 bytes in unpadded base64url.
var encodedSecretLen = base64.RawURLEncoding.EncodedLen(secretBytes)

// maxAuthorizationLen bounds the header we look at; real ones are ~50 bytes.
const maxAuthorizationLen = 512

func newSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// tokenHash is what is stored in place of a token: its SHA-256. Tokens carry
// 256 bits of entropy, so an unsalted fast hash is enough — there is nothing
// to guess — and it lets a token be found by its hash in one lookup.
func tokenHash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

func tokenHashHex(token string) string {
	h := tokenHash(token)
	return hex.EncodeToString(h[:])
}

// TokenKind tells session tokens from API keys.
type TokenKind int

// Kinds of bearer token.
const (
	SessionToken TokenKind = iota + 1
	APIKeyToken
)

// ParseBearer extracts the token of an Authorization header value
// ("Bearer <token>", scheme case-insensitive) and checks that it has the
// shape of a session token or API key, so malformed input never reaches
// Redis or PostgreSQL. Every failure is httpapi.ErrUnauthenticated.
func ParseBearer(header string) (string, TokenKind, error) {
	if header == "" || len(header) > maxAuthorizationLen {
		return "", 0, httpapi.ErrUnauthenticated
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", 0, httpapi.ErrUnauthenticated
	}
	token = strings.TrimLeft(token, " ")
	kind := SessionToken
	secret := token
	if rest, ok := strings.CutPrefix(token, APIKeyPrefix); ok {
		kind, secret = APIKeyToken, rest
	}
	if len(secret) != encodedSecretLen {
		return "", 0, httpapi.ErrUnauthenticated
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(secret); err != nil {
		return "", 0, httpapi.ErrUnauthenticated
	}
	return token, kind, nil
}
