package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are what Mint puts into a token.
type Claims struct {
	// Root is the path prefix the token is scoped to (claim "root").
	Root string
	// Put and Get are the prefixes, relative to Root, the holder may
	// publish to and subscribe from (claims "put" and "get"). "" means
	// everything under Root; an empty list means nothing. At least one of
	// them must be non-empty.
	Put, Get []string
	// Expires is the expiry time (claim "exp"); zero means none.
	Expires time.Time
	// IssuedAt is the issue time (claim "iat"); zero means none.
	IssuedAt time.Time
}

// tokenClaims is the JSON payload of a token, as moq-token writes it.
// Unknown members, including the "pub"/"sub" names some documentation
// uses, are ignored.
type tokenClaims struct {
	Root    string           `json:"root,omitempty"`
	Put     pathList         `json:"put,omitempty"`
	Get     pathList         `json:"get,omitempty"`
	Cluster bool             `json:"cluster,omitempty"`
	Exp     *jwt.NumericDate `json:"exp,omitempty"`
	Iat     *jwt.NumericDate `json:"iat,omitempty"`
	Nbf     *jwt.NumericDate `json:"nbf,omitempty"`
}

var _ jwt.Claims = (*tokenClaims)(nil)

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp, nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat, nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf, nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return "", nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return "", nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// pathList is a claim holding one path prefix as a string or several as an
// array of strings; it is always written as an array.
type pathList []string

func (p *pathList) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*p = nil // null allows nothing, like an absent claim
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*p = pathList{one}
		return nil
	}
	var many []*string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("must be a string or an array of strings")
	}
	list := make(pathList, len(many))
	for i, s := range many {
		if s == nil {
			return errors.New("must be a string or an array of strings, not null")
		}
		list[i] = *s
	}
	*p = list
	return nil
}

// Mint signs claims with the first key in keyFile (a JWK, JWK set or PEM
// key, as Config.KeyFiles) that can sign: a JWK "oct" key signs HS256 (or
// the JWK's HS384/HS512 "alg"), an EC P-256 or P-384 private key ES256 or
// ES384, an Ed25519 private key EdDSA. A JWK's "kid" goes into the token
// header. Public keys cannot mint; a raw HMAC secret file is refused with
// an error wrapping ErrNotAKey: use MintSecret.
func Mint(keyFile string, claims Claims) (string, error) {
	if err := checkClaims(claims); err != nil {
		return "", err
	}
	keys, err := loadKeyFile(keyFile)
	if err != nil {
		return "", err
	}
	var k *key
	for _, c := range keys {
		if c.canSign() {
			k = c
			break
		}
	}
	if k == nil {
		return "", &KeyFileError{File: keyFile, Err: errors.New("no private or secret key to sign with")}
	}
	return sign(k, claims)
}

// MintSecret signs claims with HS256 and the raw HMAC secret in
// secretFile, read as Config.SecretFiles reads it. The token has no kid.
func MintSecret(secretFile string, claims Claims) (string, error) {
	if err := checkClaims(claims); err != nil {
		return "", err
	}
	k, err := loadSecretFile(secretFile)
	if err != nil {
		return "", err
	}
	return sign(k, claims)
}

func checkClaims(claims Claims) error {
	if len(claims.Put) == 0 && len(claims.Get) == 0 {
		return errors.New("auth: the token would allow nothing: give at least one put or get prefix")
	}
	return nil
}

func sign(k *key, claims Claims) (string, error) {
	tc := &tokenClaims{Root: claims.Root, Put: claims.Put, Get: claims.Get}
	if !claims.Expires.IsZero() {
		tc.Exp = jwt.NewNumericDate(claims.Expires)
	}
	if !claims.IssuedAt.IsZero() {
		tc.Iat = jwt.NewNumericDate(claims.IssuedAt)
	}
	method, signKey := k.signer()
	tok := jwt.NewWithClaims(method, tc)
	if k.kid != "" {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(signKey)
	if err != nil {
		return "", fmt.Errorf("auth: signing with %s: %w", k.file, err)
	}
	return s, nil
}
