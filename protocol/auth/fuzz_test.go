package auth

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzAuthorize feeds arbitrary token strings (and paths) to an Authorizer
// holding keys of every kind: it must never panic, every refusal must wrap
// ErrUnauthorized, and every grant must be well formed.
func FuzzAuthorize(f *testing.F) {
	var files []string
	for _, alg := range []string{"HS256", "ES256", "ES384", "EdDSA"} {
		priv, err := GenerateKey(alg)
		if err != nil {
			f.Fatal(err)
		}
		dir := f.TempDir()
		path := dir + "/" + alg + ".jwk"
		if err := os.WriteFile(path, priv, 0o600); err != nil {
			f.Fatal(err)
		}
		files = append(files, path)
		for _, c := range []Claims{
			{Root: "demo", Put: []string{"alice"}, Get: []string{""}},
			{Put: []string{""}, Expires: time.Now().Add(-time.Hour)},
			{Root: "a/b", Get: []string{"c", "d/e"}, Expires: time.Now().Add(time.Hour), IssuedAt: time.Now()},
		} {
			tok, err := Mint(path, c)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(tok, "/demo")
			f.Add(tok, "/")
		}
	}
	f.Add(refHS256Token, "/demo")
	f.Add(refEdToken, "/room/x")
	f.Add("", "/")
	f.Add("a.b.c", "/x")
	f.Add("eyJhbGciOiJub25lIn0.eyJwdXQiOiIifQ.", "/")
	f.Add("eyJhbGciOiJIUzI1NiIsImtpZCI6W119.e30.AAAA", "//a//b/")

	anon := "pub"
	a, err := New(Config{KeyFiles: files, PublicPrefix: &anon})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token, path string) {
		g, err := a.Authorize(connURL(path, token))
		if err != nil {
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("error %v does not wrap ErrUnauthorized", err)
			}
			return
		}
		if g.Publish == nil || g.Subscribe == nil || len(g.Publish)+len(g.Subscribe) == 0 {
			t.Fatalf("malformed grant %#v", g)
		}
		for _, p := range append(append([]string{g.Root}, g.Publish...), g.Subscribe...) {
			if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
				t.Fatalf("unclean path %q in grant %#v", p, g)
			}
		}
	})
}

// FuzzParseKeys checks that no key file content makes the parser panic.
func FuzzParseKeys(f *testing.F) {
	for _, alg := range []string{"HS256", "ES256", "EdDSA"} {
		k, err := GenerateKey(alg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(k)
	}
	f.Add([]byte(refHS256Key))
	f.Add([]byte(`{"keys":[` + refEdPublic + `]}`))
	f.Add([]byte("secret\n"))
	f.Add([]byte("0123456789abcdef0123456789abcdef\n"))
	f.Add([]byte(`{"name":"not a key"}`))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, _, err := parseKeys("key", data)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		// A file is a key or a secret, never both.
		if k, err := parseSecret("secret", data); err == nil && (len(keys) > 0 || len(k.secret) < MinSecretSize) {
			t.Fatalf("parseSecret accepted %q (also a key: %v)", data, len(keys) > 0)
		}
		_, _ = PublicJWK(data)
	})
}
