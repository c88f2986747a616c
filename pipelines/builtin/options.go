package builtin

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
)

// fieldErr is an error about the option field.
func fieldErr(field, format string, args ...any) error {
	return &pipelines.FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// nonNegative reports a negative duration at field.
func nonNegative(field string, d time.Duration) error {
	if d < 0 {
		return fieldErr(field, "must not be negative, got %v", d)
	}
	return nil
}

// optionsOf returns opts as the options type T a kind's Options made; the
// runner hands back what Options returned, so anything else is a caller's
// mistake, reported rather than panicking.
func optionsOf[T any](kind string, opts any) (*T, error) {
	o, ok := opts.(*T)
	if !ok || o == nil {
		var want *T
		return nil, sdk.Permanent(fmt.Errorf("%s: options are %T, want %T", kind, opts, want))
	}
	return o, nil
}

// resolve returns name relative to dir (the config file's directory)
// unless it is absolute or dir is "".
func resolve(dir, name string) string {
	if dir == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// BackoffOptions are the "backoff:" options of the kinds that reconnect:
// how long they wait between attempts after a failure.
type BackoffOptions struct {
	// Min is the first wait (default 500ms).
	Min time.Duration `yaml:"min"`
	// Max is the longest wait: each wait doubles up to it (default 10s).
	Max time.Duration `yaml:"max"`
	// Jitter spreads each wait by ± this fraction of it, 0 to 1 (default
	// 0.5; 0 turns it off), so that the clients of a restarted server do
	// not all return at once.
	Jitter float64 `yaml:"jitter"`
	// GiveUpAfter stops retrying, failing the part, once it has been
	// failing this long (default 0: never).
	GiveUpAfter time.Duration `yaml:"give_up_after"`
}

// defaultBackoff is BackoffOptions holding sdk.DefaultBackoff.
func defaultBackoff() BackoffOptions {
	d := sdk.DefaultBackoff
	return BackoffOptions{Min: d.Min, Max: d.Max, Jitter: d.Jitter, GiveUpAfter: d.GiveUpAfter}
}

// validate returns the FieldErrors of b, their fields under prefix
// ("backoff").
func (b BackoffOptions) validate(prefix string) []error {
	var errs []error
	if b.Min <= 0 {
		errs = append(errs, fieldErr(prefix+".min", "must be positive, got %v", b.Min))
	}
	if b.Max < b.Min {
		errs = append(errs, fieldErr(prefix+".max", "%v is less than min (%v)", b.Max, b.Min))
	}
	if b.Jitter < 0 || b.Jitter > 1 {
		errs = append(errs, fieldErr(prefix+".jitter", "must be between 0 and 1, got %v", b.Jitter))
	}
	if err := nonNegative(prefix+".give_up_after", b.GiveUpAfter); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// sdk returns b as an sdk.Backoff. A jitter of 0 means none here, where
// sdk.Backoff takes 0 as "the default" and a negative value as none. The
// adapters apply WithDefaults themselves.
func (b BackoffOptions) sdk() sdk.Backoff {
	jitter := b.Jitter
	if jitter == 0 {
		jitter = -1
	}
	return sdk.Backoff{Min: b.Min, Max: b.Max, Jitter: jitter, GiveUpAfter: b.GiveUpAfter}
}
