package auth

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moqbridge/moqbridge/moq"
)

// ErrUnauthorized is wrapped by every error Authorize returns.
var ErrUnauthorized = errors.New("unauthorized")

// maxTokenLength bounds the token Authorize will parse.
const maxTokenLength = 16 << 10

// Grant is what a connection may do. Root is the connection's root path
// (the cleaned URL path); Publish and Subscribe are the prefixes, relative
// to Root, it may publish to and subscribe from. "" allows everything under
// Root; an empty (non-nil) list allows nothing. Both lists are always
// non-nil, sorted shortest first, and hold no prefix covered by another.
type Grant struct {
	Root               string
	Publish, Subscribe []string
}

// Config says how connections are authorized.
type Config struct {
	// KeyFiles are the verification keys: JWK or JWK-set files and PEM
	// public or private keys, in any mix. A file that is none of these
	// (a raw secret, a certificate, other JSON, an empty file) is refused;
	// the error is a *KeyFileError, wrapping ErrNotAKey when the file may
	// be a raw secret.
	KeyFiles []string
	// SecretFiles are raw HMAC secrets: each file's bytes less trailing
	// newlines, at least MinSecretSize bytes, for HS256 (and HS384 and
	// HS512 when at least 48 and 64 bytes). A file that holds or looks like
	// a key (PEM, JWK, JSON) is refused with an error wrapping
	// ErrNotASecret.
	SecretFiles []string
	// PublicPrefix, when not nil, lets connections without a token publish
	// and subscribe under this prefix; "" means everywhere. nil: a token is
	// always required.
	PublicPrefix *string
}

// Authorizer checks the tokens of incoming connections. It is safe for
// concurrent use.
type Authorizer struct {
	keys   []*key
	public *string // cleaned
	parser *jwt.Parser
}

// New loads cfg's keys. An unusable file is reported as a *KeyFileError.
// At least one key or secret file, or a public prefix, is required.
func New(cfg Config) (*Authorizer, error) {
	a := &Authorizer{parser: jwt.NewParser()}
	for _, file := range cfg.KeyFiles {
		keys, err := loadKeyFile(file)
		if err != nil {
			return nil, err
		}
		n := len(a.keys)
		for _, k := range keys {
			if k.verify {
				a.keys = append(a.keys, k)
			}
		}
		if len(a.keys) == n {
			return nil, &KeyFileError{File: file, Err: errors.New(`no key may verify (its "key_ops" lack "verify")`)}
		}
	}
	for _, file := range cfg.SecretFiles {
		k, err := loadSecretFile(file)
		if err != nil {
			return nil, err
		}
		a.keys = append(a.keys, k)
	}
	if cfg.PublicPrefix != nil {
		p := moq.CleanPath(*cfg.PublicPrefix)
		a.public = &p
	}
	if len(a.keys) == 0 && a.public == nil {
		return nil, errors.New("auth: no key file, no secret file and no public prefix: no connection could be authorized")
	}
	return a, nil
}

func unauthorized(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthorized, fmt.Sprintf(format, args...))
}

// Authorize decides what the connection that requested u may do. The token
// is the "jwt" query parameter; u.Path is the root the client asks for, and
// must lie under the token's root (permissions are then narrowed to that
// sub-tree) or above it (prefixes are then lengthened by the difference).
// Without a token (no or empty "jwt" parameter), the public prefix, if any,
// is granted for both publish and subscribe; a token that fails is refused
// even then. Two different non-empty "jwt" parameters, or a token over
// 16 KiB, are refused. Every error wraps ErrUnauthorized and says why: bad
// signature, token expired or not valid yet, wrong algorithm for key,
// unknown key id, malformed token, path unrelated to the token root, no
// permission, or missing token without public access.
func (a *Authorizer) Authorize(u *url.URL) (Grant, error) {
	if u == nil {
		return Grant{}, unauthorized("no URL")
	}
	path := moq.CleanPath(u.Path)
	var token string
	for _, v := range u.Query()["jwt"] {
		if v == "" {
			continue
		}
		if token != "" && v != token {
			return Grant{}, unauthorized("more than one jwt query parameter")
		}
		token = v
	}
	if token == "" {
		if a.public == nil {
			return Grant{}, unauthorized("missing token (no jwt query parameter) and no public access")
		}
		all := []string{*a.public}
		g, err := scope(path, "", all, all)
		if err != nil {
			return Grant{}, unauthorized("no token, and path %q is outside the public prefix %q", path, *a.public)
		}
		return g, nil
	}
	claims, err := a.verify(token)
	if err != nil {
		return Grant{}, err
	}
	return scope(path, claims.Root, claims.Put, claims.Get)
}

// Sentinels the key lookup returns to the jwt parser.
var (
	errUnknownKid = errors.New("unknown key id")
	errWrongAlg   = errors.New("wrong algorithm for key")
	errBadKid     = errors.New(`"kid" header is not a string`)
)

// verify checks token's signature and time claims and returns its claims.
func (a *Authorizer) verify(token string) (*tokenClaims, error) {
	if len(a.keys) == 0 {
		return nil, unauthorized("a token was given but no verification key is configured")
	}
	if len(token) > maxTokenLength {
		return nil, unauthorized("token is %d bytes, over the %d-byte limit", len(token), maxTokenLength)
	}
	claims := &tokenClaims{}
	tok, err := a.parser.ParseWithClaims(token, claims, a.lookup)
	if err == nil {
		return claims, nil
	}
	alg, kid := "", ""
	if tok != nil {
		if tok.Method != nil {
			alg = tok.Method.Alg()
		} else if s, ok := tok.Header["alg"].(string); ok {
			alg = s
		}
		kid, _ = tok.Header["kid"].(string)
	}
	switch {
	case errors.Is(err, errUnknownKid):
		return nil, unauthorized("unknown key id %q", kid)
	case errors.Is(err, errBadKid):
		return nil, unauthorized("malformed token: %v", errBadKid)
	case errors.Is(err, errWrongAlg):
		return nil, unauthorized("wrong algorithm for key: no configured key verifies %q tokens", alg)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, unauthorized("malformed token: %v", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// The parser knows no such "alg" (or none at all).
		return nil, unauthorized("unsupported algorithm %q", alg)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, unauthorized("bad signature")
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, unauthorized("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, unauthorized("token not valid yet")
	}
	return nil, unauthorized("invalid token: %v", err)
}

// lookup picks the keys a token may be checked against: those whose kid
// equals the header's "kid" (or, when none does, those without a kid), or
// every key when the header names none; then only those that fit the
// token's algorithm, so that, say, an HS256 token is never checked with an
// EC key's bytes as the HMAC secret.
func (a *Authorizer) lookup(tok *jwt.Token) (any, error) {
	alg := tok.Method.Alg()
	var kid string
	if v, ok := tok.Header["kid"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return nil, errBadKid
		}
		kid = s
	}
	candidates := a.keys
	if kid != "" {
		candidates = keysWithKid(a.keys, kid)
		if len(candidates) == 0 {
			candidates = keysWithKid(a.keys, "")
		}
		if len(candidates) == 0 {
			return nil, errUnknownKid
		}
	}
	var set []jwt.VerificationKey
	for _, k := range candidates {
		if k.accepts(alg) {
			set = append(set, k.verifier())
		}
	}
	switch len(set) {
	case 0:
		return nil, errWrongAlg
	case 1:
		return set[0], nil
	}
	return jwt.VerificationKeySet{Keys: set}, nil
}

func keysWithKid(keys []*key, kid string) []*key {
	var out []*key
	for _, k := range keys {
		if k.kid == kid {
			out = append(out, k)
		}
	}
	return out
}

// scope turns claims rooted at claimRoot into the grant for a connection
// whose URL path is path (both are cleaned here).
//
// When path lies under claimRoot, the remainder narrows the permissions:
// a prefix that contains the remainder becomes "", one under it loses the
// remainder, any other is dropped. When claimRoot lies under path, each
// prefix is lengthened by the difference. Otherwise the path is unrelated
// to the token and refused, as is a grant left with no prefix at all.
func scope(path, claimRoot string, put, get []string) (Grant, error) {
	path = moq.CleanPath(path)
	claimRoot = moq.CleanPath(claimRoot)
	var suffix, prefix string
	switch {
	case moq.HasPathPrefix(path, claimRoot):
		suffix = moq.PathSuffix(path, claimRoot)
	case moq.HasPathPrefix(claimRoot, path):
		prefix = moq.PathSuffix(claimRoot, path)
	default:
		return Grant{}, unauthorized("path %q is unrelated to the token root %q", path, claimRoot)
	}
	rescope := func(list []string) []string {
		out := make([]string, 0, len(list))
		for _, p := range list {
			p = moq.JoinPath(prefix, moq.CleanPath(p))
			switch {
			case moq.HasPathPrefix(p, suffix):
				out = append(out, moq.PathSuffix(p, suffix))
			case moq.HasPathPrefix(suffix, p):
				out = append(out, "")
			}
		}
		return reducePrefixes(out)
	}
	g := Grant{Root: path, Publish: rescope(put), Subscribe: rescope(get)}
	if len(g.Publish) == 0 && len(g.Subscribe) == 0 {
		if claimRoot == path {
			return Grant{}, unauthorized("no permission: the token allows neither put nor get")
		}
		return Grant{}, unauthorized("no permission under path %q", path)
	}
	return g, nil
}

// reducePrefixes sorts prefixes shortest first (then bytewise), and drops
// duplicates and prefixes that another one already covers. The result is
// never nil.
func reducePrefixes(list []string) []string {
	slices.SortFunc(list, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	out := make([]string, 0, len(list))
next:
	for _, p := range list {
		for _, q := range out {
			if moq.HasPathPrefix(p, q) {
				continue next
			}
		}
		out = append(out, p)
	}
	return out
}
