package auth

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id's cost parameters. They are encoded into every
// hash, so raising them later only affects new hashes; old ones still verify.
type PasswordParams struct {
	// Memory in KiB.
	Memory uint32
	// Iterations (argon2's time cost).
	Iterations uint32
	// Parallelism (lanes).
	Parallelism uint8
	// SaltLen and KeyLen are in bytes.
	SaltLen uint32
	KeyLen  uint32
}

// DefaultPasswordParams follow OWASP's argon2id recommendation (19 MiB, two
// passes, one lane): a few tens of milliseconds per login on one core, which
// is cheap for a user and expensive for an offline guesser.
var DefaultPasswordParams = PasswordParams{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// Password length bounds. The upper one keeps hashing cost bounded for
// hostile input; it is far above any real passphrase.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

var errBadHash = errors.New("malformed password hash")

// HashPassword returns password hashed with argon2id under a fresh random
// salt, in the PHC string format:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (unpadded standard base64).
func HashPassword(password string, p PasswordParams) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Iterations, p.Parallelism,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches encoded, a hash made by
// HashPassword. The comparison takes the same time wherever the first
// differing byte is.
func VerifyPassword(password, encoded string) (bool, error) {
	p, salt, want, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

func decodeHash(encoded string) (PasswordParams, []byte, []byte, error) {
	var p PasswordParams
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, nil, nil, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Iterations, &p.Parallelism); err != nil {
		return p, nil, nil, errBadHash
	}
	// Parameters come from our own database, but a corrupted row must not be
	// able to make one login allocate gigabytes.
	if p.Memory == 0 || p.Memory > 1<<20 || p.Iterations == 0 || p.Iterations > 100 || p.Parallelism == 0 {
		return p, nil, nil, errBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 {
		return p, nil, nil, errBadHash
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}

// ReadPassword reads a password given on r (stdin of `trackops user
// create`): the first line, without its line ending. A password is never a
// command-line argument, which other users of the machine could read.
func ReadPassword(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("the password is read from stdin; none was given")
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("the password is read from stdin; it was empty")
	}
	return pw, nil
}
