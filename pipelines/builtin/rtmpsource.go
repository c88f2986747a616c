package builtin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

// RTMPSourceOptions are the options of the rtmp source: the publishes of
// one RTMP application on the shared RTMP listener (the config's "rtmp:"
// section), each stream key a broadcast at the pipeline's path template
// filled with {app} and {key} ("live/{key}": rtmp://host/live/cam is the
// broadcast live/cam).
type RTMPSourceOptions struct {
	// App is the RTMP application taken ("live" in
	// rtmp://host/live/KEY; default "live"); "*" takes every application
	// no other pipeline names.
	App string `yaml:"app"`
	// Keys are the stream keys allowed to publish (default empty: any
	// key). With "server.auth", a key not listed may still publish with a
	// token that allows the broadcast's path (KEY?jwt=TOKEN, or the token
	// as the key) or a path under the public prefix; an empty list then
	// leaves only those. Keep keys out of the file with ${VAR}.
	Keys []string `yaml:"keys"`
	// Linger is how long a broadcast whose publisher dropped waits for
	// the same stream key to return and continue it, subscribers staying
	// subscribed (default 5s; 0: the broadcast ends at once).
	Linger time.Duration `yaml:"linger"`
	// Replace lets a new publisher of a stream key take over from the one
	// live (whose connection is closed) instead of being refused (default
	// false).
	Replace bool `yaml:"replace"`
}

// Validate implements pipelines.Validator.
func (o *RTMPSourceOptions) Validate() error {
	var errs []error
	if err := validateApp(o.App); err != nil {
		errs = append(errs, &pipelines.FieldError{Field: "app", Err: err})
	}
	seen := make(map[string]int, len(o.Keys))
	for i, k := range o.Keys {
		// A key is a secret: errors name its position, never its value.
		field := fmt.Sprintf("keys[%d]", i)
		switch {
		case k == "":
			errs = append(errs, fieldErr(field, "an empty stream key"))
		case strings.ContainsAny(k, "/?#") || strings.ContainsFunc(k, isControl):
			errs = append(errs, fieldErr(field, "a stream key cannot contain '/', '?', '#' or control characters"))
		default:
			if j, dup := seen[k]; dup {
				errs = append(errs, fieldErr(field, "repeats keys[%d]", j))
			}
			seen[k] = i
		}
	}
	if err := nonNegative("linger", o.Linger); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// UsesRTMPListener implements pipelines.RTMPListenerUser: the source
// takes its broadcasts from the shared listener, so the config needs its
// "rtmp:" section.
func (o *RTMPSourceOptions) UsesRTMPListener() bool { return true }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// validateApp checks an RTMP application name, or "*".
func validateApp(app string) error {
	switch {
	case app == "*":
		return nil
	case app == "":
		return errors.New(`the RTMP application is empty (use "*" for any)`)
	case strings.ContainsAny(app, "{}*?#"):
		return fmt.Errorf("%q: an application cannot contain '{', '}', '*', '?' or '#' (only \"*\" alone, for any)", app)
	case moq.CleanPath(app) != app:
		return fmt.Errorf("%q: an application cannot start or end with '/' or hold '//'", app)
	}
	if err := moq.ValidatePath(app); err != nil {
		return fmt.Errorf("%q: %w", app, err)
	}
	return nil
}

// RTMPSource is the rtmp source kind: a listener kind taking the
// publishes of one RTMP application from the shared RTMP listener, each
// a broadcast at the pipeline's path template.
func RTMPSource() pipelines.SourceKind {
	return pipelines.SourceKind{
		Name:    "rtmp",
		Summary: "RTMP publishes (OBS, ffmpeg) to one application of the shared rtmp: listener, a broadcast per stream key",
		Options: func() any { return &RTMPSourceOptions{App: "live", Linger: rtmp.DefaultLinger} },
		NewListener: func(env pipelines.SourceEnv, opts any) (sdk.Listener, error) {
			o, err := optionsOf[RTMPSourceOptions]("rtmp", opts)
			if err != nil {
				return nil, err
			}
			if env.RTMP == nil {
				return nil, sdk.Permanent(errors.New(`source rtmp needs the shared RTMP listener: add an "rtmp:" section to the config (rtmp: {listen: ":1935"})`))
			}
			template := pathTemplate(env.Path)
			if _, err := RTMPPaths(template, o.App); err != nil {
				return nil, sdk.Permanent(err)
			}
			// The route's linger is sources/rtmp's: 0 takes its default,
			// a negative one ends a broadcast at once, which is what
			// this option's 0 says.
			linger := o.Linger
			if linger == 0 {
				linger = -1
			}
			return &rtmpListener{router: env.RTMP, route: pipelines.RTMPRoute{
				App:          o.App,
				PathTemplate: template,
				Keys:         append([]string(nil), o.Keys...),
				Linger:       linger,
				Replace:      o.Replace,
			}}, nil
		},
		Paths: func(path string, opts any) (string, error) {
			o, err := optionsOf[RTMPSourceOptions]("rtmp", opts)
			if err != nil {
				return "", err
			}
			return RTMPPaths(pathTemplate(path), o.App)
		},
	}
}

// pathTemplate is the pipeline's path as an RTMP path template, the
// default one when it has none.
func pathTemplate(path string) string {
	if path == "" {
		return rtmp.DefaultPathTemplate
	}
	return path
}

// rtmpListener routes the publishes of its application to the publisher
// it is run with.
type rtmpListener struct {
	router pipelines.RTMPRouter
	route  pipelines.RTMPRoute
}

// Run implements sdk.Listener.
func (l *rtmpListener) Run(ctx context.Context, p *sdk.Publisher) error {
	return l.router.Route(ctx, l.route, p)
}

// RTMPPaths returns the path pattern of the broadcasts an RTMP path
// template makes for the application app ("*": any), which sinks follow:
//
//   - {app} is filled in first when app is not "*";
//   - a template without a placeholder left is one exact path
//     ("live/studio" takes every allowed key to that path);
//   - otherwise it is the template's part before its first placeholder,
//     cut back to a whole path segment, followed by "/*": "live/{key}" →
//     "live/*", "live/cam-{key}" → "live/*", "{app}/{key}" with app
//     "live" → "live/*"; with nothing before the placeholder ("{key}",
//     "{app}/{key}" with app "*") it is "*", every path.
//
// Placeholders other than {app} and {key}, unbalanced braces, a '*', and
// a template whose filled-in paths would be invalid are errors.
func RTMPPaths(template, app string) (string, error) {
	if err := checkTemplate(template, isRTMPPlaceholder); err != nil {
		return "", fmt.Errorf("path template %q: %w", template, err)
	}
	if strings.Contains(template, "*") {
		return "", fmt.Errorf("path template %q: a '*' would read as a path pattern", template)
	}
	sample := strings.NewReplacer("{app}", "app", "{key}", "key").Replace(template)
	if err := moq.ValidatePath(moq.CleanPath(sample)); err != nil {
		return "", fmt.Errorf("path template %q: %w", template, err)
	}
	if app != "*" {
		template = strings.ReplaceAll(template, "{app}", app)
	}
	i := strings.IndexByte(template, '{')
	if i < 0 {
		return moq.CleanPath(template), nil
	}
	prefix := template[:i]
	if j := strings.LastIndexByte(prefix, '/'); j >= 0 {
		prefix = prefix[:j]
	} else {
		prefix = ""
	}
	if prefix = moq.CleanPath(prefix); prefix == "" {
		return "*", nil
	}
	return prefix + "/*", nil
}

func isRTMPPlaceholder(name string) (bool, string) {
	return name == "app" || name == "key", "{app}, {key}"
}

// checkTemplate reports a placeholder of s that known does not know (it
// returns the list of those it knows, for the message), and braces that do
// not pair.
func checkTemplate(s string, known func(name string) (ok bool, list string)) error {
	for rest := s; rest != ""; {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			return nil
		}
		if rest[i] == '}' {
			return errors.New("a '}' without its '{'")
		}
		j := strings.IndexAny(rest[i+1:], "{}")
		if j < 0 || rest[i+1+j] == '{' {
			return errors.New("a '{' without its '}'")
		}
		name := rest[i+1 : i+1+j]
		if ok, list := known(name); !ok {
			return fmt.Errorf("unknown placeholder {%s} (known: %s)", name, list)
		}
		rest = rest[i+j+2:]
	}
	return nil
}
