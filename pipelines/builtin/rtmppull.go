package builtin

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moqbridge/moqbridge/internal/rtmpurl"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

// RTMPPullOptions are the options of the rtmp_pull source: a remote RTMP
// stream played into the broadcast at the pipeline's path.
type RTMPPullOptions struct {
	// URL is the stream to play: rtmp://HOST[:PORT]/APP/STREAM-KEY or
	// rtmps://… (required). The stream key never appears in logs or
	// errors; keep it out of the file with ${VAR}.
	URL string `yaml:"url"`
	// Backoff spaces the reconnections when the stream drops or the
	// server is away; the broadcast continues across them.
	Backoff BackoffOptions `yaml:"backoff"`
}

// Validate implements pipelines.Validator.
func (o *RTMPPullOptions) Validate() error {
	var errs []error
	if err := validateRTMPURL(o.URL); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, o.Backoff.validate("backoff")...)
	return errors.Join(errs...)
}

// validateRTMPURL reports, at "url", a missing or unusable RTMP URL; the
// error shows the URL without its stream key.
func validateRTMPURL(raw string) error {
	if raw == "" {
		return fieldErr("url", "required: rtmp://HOST[:PORT]/APP/STREAM-KEY or rtmps://…")
	}
	if _, err := rtmpurl.Parse(raw); err != nil {
		return &pipelines.FieldError{Field: "url", Err: errors.New(withoutURL(err.Error(), raw))}
	}
	return nil
}

// withoutURL is an error message of rtmpurl.Parse about raw without the
// URL itself: the position in the file says which it is, and a URL that
// does not parse as one may show its stream key even redacted (a single
// path segment is taken for the application).
func withoutURL(msg, raw string) string {
	quoted := fmt.Sprintf("%q", rtmpurl.Redact(raw))
	if _, rest, ok := strings.Cut(msg, quoted); ok {
		msg = strings.TrimPrefix(rest, ": ")
		if strings.HasPrefix(msg, " ") {
			msg = "the URL" + msg
		}
	}
	return msg
}

// RTMPPullSource is the rtmp_pull source kind: it plays a remote RTMP
// stream, reconnecting with backoff, into the broadcast at the pipeline's
// path.
func RTMPPullSource() pipelines.SourceKind {
	return pipelines.SourceKind{
		Name:    "rtmp_pull",
		Summary: "a remote RTMP stream played (rtmp:// or rtmps://), reconnecting when it drops",
		Options: func() any { return &RTMPPullOptions{Backoff: defaultBackoff()} },
		NewSource: func(env pipelines.SourceEnv, opts any) (sdk.Source, error) {
			o, err := optionsOf[RTMPPullOptions]("rtmp_pull", opts)
			if err != nil {
				return nil, err
			}
			if err := o.Validate(); err != nil {
				return nil, sdk.Permanent(err)
			}
			return rtmp.NewPull(rtmp.PullConfig{URL: o.URL, Backoff: o.Backoff.sdk(), Logger: env.Logger})
		},
	}
}
