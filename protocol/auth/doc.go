// Package auth implements moqbridge's JWT authentication, compatible with
// the tokens and key files of moq-relay and moq-token.
//
// # Tokens
//
// A client presents its token as the "jwt" query parameter of the URL it
// connects to (WebTransport CONNECT or WebSocket upgrade). The token is a
// JWS signed with HS256, HS384, HS512, ES256, ES384 or EdDSA, whose claims
// are:
//
//	root     string                the path prefix the token is scoped to
//	put      string or [string]    prefixes, relative to root, it may publish to
//	get      string or [string]    prefixes, relative to root, it may subscribe from
//	cluster  bool                  parsed, otherwise ignored
//	exp, nbf number                checked when present (no leeway)
//	iat      number                parsed, not checked
//
// A prefix "" allows everything under root; a missing claim or an empty
// array allows nothing. The "pub" and "sub" names found in some
// documentation are not claims: only put and get grant anything.
//
// # Paths
//
// Paths are cleaned as MOQ Lite does (leading and trailing '/' removed,
// runs of '/' collapsed) and prefixes match on '/' boundaries: "foo"
// matches "foo" and "foo/bar" but not "foobar".
//
// The URL path is the root the connection asks for; wire paths are relative
// to it. It must be related to the token's root:
//
//   - under it (root "demo", URL "/demo/room"): the permissions narrow to
//     the sub-tree. A prefix that contains "room" becomes "", one under it
//     ("room/alice") loses it ("alice"), any other is dropped.
//   - above it (root "demo/room", URL "/"): each prefix is lengthened by
//     the difference ("alice" becomes "demo/room/alice").
//   - otherwise the connection is refused, and so is one left with no
//     publish or subscribe prefix at all.
//
// Without a token, a configured public prefix P acts like a token with
// root "" and put = get = [P]: a connection under P may do anything there,
// a connection above P may reach P, any other is refused. A token that
// fails verification is refused even when a public prefix is configured.
//
// # Keys
//
// Key files are recognised by their content:
//
//   - PEM (PUBLIC KEY, PRIVATE KEY, EC PRIVATE KEY, CERTIFICATE) holding
//     EC P-256/P-384 or Ed25519 keys;
//   - a JWK, or a JWK set {"keys":[…]}, as JSON or base64url-encoded JSON,
//     with kty "oct" (secret "k"), "EC" (crv P-256 or P-384) or "OKP" (crv
//     Ed25519); "alg", "kid", "use" and "key_ops" are honoured;
//   - anything else is a raw HMAC secret: the file's bytes less trailing
//     newlines.
//
// A token is checked against the keys whose kid equals the token's "kid"
// header (or, when no key has that kid, the keys without one), or against
// every key when the header has no kid; and only against keys that fit its
// algorithm: HMAC algorithms against secrets, ES256 against P-256, ES384
// against P-384, EdDSA against Ed25519. An HS256 token can therefore never
// be checked with a public key's bytes as its secret.
package auth
