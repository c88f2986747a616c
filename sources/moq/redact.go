package moq

import "regexp"

// A token rides in the relay URL (?jwt=…) and so in every message that
// quotes the URL, the protocol's errors included: what this package logs
// and returns shows the URL with the token hidden.

// tokenParam matches the value of a jwt query parameter.
var tokenParam = regexp.MustCompile(`((?:^|[?&;\s"'])jwt=)[^&\s"']*`)

// hideToken returns s with the value of every jwt query parameter
// replaced by REDACTED.
func hideToken(s string) string { return tokenParam.ReplaceAllString(s, "${1}REDACTED") }

// tokenHidden is an error whose message has its tokens hidden; errors.Is
// and errors.As see the original.
type tokenHidden struct{ err error }

func (e tokenHidden) Error() string { return hideToken(e.err.Error()) }
func (e tokenHidden) Unwrap() error { return e.err }

// hideTokenErr wraps err so that its message hides tokens (nil stays nil).
func hideTokenErr(err error) error {
	if err == nil {
		return nil
	}
	return tokenHidden{err}
}
