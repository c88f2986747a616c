package sdk

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Catalog is the hang catalog published as JSON on the catalog.json track,
// with the schema of @moq/hang 0.3.5 (hang-format §2.2).
//
// MarshalJSON writes what that schema accepts, omitting empty optional
// fields and adding the Dec-2025 compatibility fields the sections carry
// (priority). UnmarshalJSON (and ParseCatalog) is tolerant: it also reads
// the older schema variants (rendition arrays of {track, config}, a single
// audio {track, config}, displayRatioWidth/Height), a missing container
// (legacy), unknown container kinds, unknown fields and integers written as
// non-integral numbers.
type Catalog struct {
	Video *VideoSection
	Audio *AudioSection
	// Extra holds the root keys other than video and audio, verbatim;
	// they are written back as they were.
	Extra map[string]json.RawMessage
}

// VideoSection is the catalog's video section.
type VideoSection struct {
	// Renditions maps track names to their decoder configurations.
	Renditions map[string]VideoRendition `json:"renditions"`
	// Display is the render size after rotation; optional.
	Display *Display `json:"display,omitempty"`
	// Rotation is clockwise, in degrees.
	Rotation float64 `json:"rotation,omitempty"`
	// Flip mirrors the video horizontally.
	Flip bool `json:"flip,omitempty"`
	// Priority is the Dec-2025 section priority, which those readers
	// require and 0.3.5 ignores; nil omits it.
	Priority *uint8 `json:"priority,omitempty"`
}

// AudioSection is the catalog's audio section.
type AudioSection struct {
	Renditions map[string]AudioRendition `json:"renditions"`
	Priority   *uint8                    `json:"priority,omitempty"`
}

// Display is a render size in pixels.
type Display struct {
	Width  int `json:"width"`
	Height int `json:"height"`
}

// VideoRendition mirrors WebCodecs' VideoDecoderConfig plus the hang
// fields. Zero values are omitted.
type VideoRendition struct {
	Codec               string     `json:"codec"`
	Container           *Container `json:"container,omitempty"`
	Description         HexBytes   `json:"description,omitempty"`
	CodedWidth          int        `json:"codedWidth,omitempty"`
	CodedHeight         int        `json:"codedHeight,omitempty"`
	DisplayAspectWidth  int        `json:"displayAspectWidth,omitempty"`
	DisplayAspectHeight int        `json:"displayAspectHeight,omitempty"`
	Framerate           float64    `json:"framerate,omitempty"`
	Bitrate             int        `json:"bitrate,omitempty"`
	OptimizeForLatency  *bool      `json:"optimizeForLatency,omitempty"`
	// Jitter is in whole milliseconds.
	Jitter    int       `json:"jitter,omitempty"`
	Timeline  *Timeline `json:"timeline,omitempty"`
	Broadcast string    `json:"broadcast,omitempty"`
}

// AudioRendition mirrors WebCodecs' AudioDecoderConfig plus the hang
// fields. SampleRate and NumberOfChannels are required by the schema and
// always written.
type AudioRendition struct {
	Codec            string     `json:"codec"`
	Container        *Container `json:"container,omitempty"`
	Description      HexBytes   `json:"description,omitempty"`
	SampleRate       int        `json:"sampleRate"`
	NumberOfChannels int        `json:"numberOfChannels"`
	Bitrate          int        `json:"bitrate,omitempty"`
	Jitter           int        `json:"jitter,omitempty"`
	Timeline         *Timeline  `json:"timeline,omitempty"`
	Broadcast        string     `json:"broadcast,omitempty"`
}

// Timeline names a rendition's companion index track.
type Timeline struct {
	Track     string `json:"track"`
	Timescale int    `json:"timescale,omitempty"`
	Wall      int    `json:"wall,omitempty"`
}

// Container says how a rendition's frames are packaged; a nil *Container
// means legacy.
type Container struct {
	Kind ContainerKind
	// Init is the cmaf init segment (base64 in JSON).
	Init []byte
	// raw is the JSON of a container of another kind, kept verbatim.
	raw json.RawMessage
}

// MarshalJSON implements json.Marshaler.
func (c Container) MarshalJSON() ([]byte, error) {
	switch c.Kind {
	case ContainerLegacy, ContainerLOC:
		return json.Marshal(struct {
			Kind ContainerKind `json:"kind"`
		}{c.Kind})
	case ContainerCMAF:
		return json.Marshal(struct {
			Kind ContainerKind `json:"kind"`
			Init []byte        `json:"init"`
		}{c.Kind, c.Init})
	default:
		if c.raw != nil {
			return c.raw, nil
		}
		return json.Marshal(struct {
			Kind ContainerKind `json:"kind"`
		}{c.Kind})
	}
}

// UnmarshalJSON implements json.Unmarshaler. A cmaf container without an
// init is an error, as for the reference reader; unknown kinds are kept.
func (c *Container) UnmarshalJSON(b []byte) error {
	var v struct {
		Kind *string `json:"kind"`
		Init *string `json:"init"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("container: %w", err)
	}
	if v.Kind == nil {
		return errors.New("container: no kind")
	}
	*c = Container{Kind: ContainerKind(*v.Kind)}
	switch c.Kind {
	case ContainerLegacy, ContainerLOC:
	case ContainerCMAF:
		if v.Init == nil {
			return errors.New("container: cmaf without init")
		}
		var err error
		if c.Init, err = decodeBase64(*v.Init); err != nil {
			return fmt.Errorf("container: init: %w", err)
		}
	default:
		c.raw = append(json.RawMessage(nil), b...)
	}
	return nil
}

// HexBytes is a byte string written as lowercase hex in JSON (the catalog's
// description); either case is accepted when reading.
type HexBytes []byte

// MarshalJSON implements json.Marshaler.
func (h HexBytes) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+2*len(h))
	b = append(b, '"')
	b = hex.AppendEncode(b, h)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (h *HexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("description: %w", err)
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("description is not hex: %w", err)
	}
	*h = v
	return nil
}

// MarshalJSON implements json.Marshaler: the video and audio sections, then
// the extra root keys, all sorted.
func (c Catalog) MarshalJSON() ([]byte, error) {
	root := make(map[string]any, 2+len(c.Extra))
	for k, v := range c.Extra {
		root[k] = v
	}
	if c.Video != nil {
		root["video"] = c.Video
	} else {
		delete(root, "video")
	}
	if c.Audio != nil {
		root["audio"] = c.Audio
	} else {
		delete(root, "audio")
	}
	return json.Marshal(root)
}

// MarshalJSON implements json.Marshaler; a nil renditions map is written
// as {} since the schema requires the key.
func (s VideoSection) MarshalJSON() ([]byte, error) {
	type plain VideoSection
	if s.Renditions == nil {
		s.Renditions = map[string]VideoRendition{}
	}
	return json.Marshal(plain(s))
}

// MarshalJSON implements json.Marshaler; see VideoSection.MarshalJSON.
func (s AudioSection) MarshalJSON() ([]byte, error) {
	type plain AudioSection
	if s.Renditions == nil {
		s.Renditions = map[string]AudioRendition{}
	}
	return json.Marshal(plain(s))
}

// ParseCatalog decodes a catalog, see Catalog.
func ParseCatalog(b []byte) (*Catalog, error) {
	c := new(Catalog)
	if err := json.Unmarshal(b, c); err != nil {
		return nil, err
	}
	return c, nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (c *Catalog) UnmarshalJSON(b []byte) error {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(b, &root); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if root == nil {
		return errors.New("catalog: not an object")
	}
	*c = Catalog{}
	for k, v := range root {
		switch k {
		case "video":
			if isNull(v) {
				continue
			}
			c.Video = new(VideoSection)
			if err := c.Video.UnmarshalJSON(v); err != nil {
				return fmt.Errorf("catalog: video: %w", err)
			}
		case "audio":
			if isNull(v) {
				continue
			}
			c.Audio = new(AudioSection)
			if err := c.Audio.UnmarshalJSON(v); err != nil {
				return fmt.Errorf("catalog: audio: %w", err)
			}
		default:
			if c.Extra == nil {
				c.Extra = make(map[string]json.RawMessage)
			}
			c.Extra[k] = v
		}
	}
	return nil
}

func isNull(b json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(b), []byte("null")) }

// legacyEntry is the Dec-2025-and-older {track, config} rendition form.
type legacyEntry struct {
	Track *struct {
		Name     *string         `json:"name"`
		Priority json.RawMessage `json:"priority"`
	} `json:"track"`
	Config json.RawMessage `json:"config"`
}

// sectionForms decodes a section in any of its forms: an object with
// renditions (current), an array of {track, config} or a single
// {track, config} (older). It calls rendition for every rendition and
// returns the section object's fields (nil for the older forms) and the
// priority found in the older forms.
func sectionForms(b []byte, rendition func(name string, cfg json.RawMessage) error) (fields map[string]json.RawMessage, prio *uint8, err error) {
	b = bytes.TrimSpace(b)
	var entries []legacyEntry
	switch {
	case len(b) > 0 && b[0] == '[':
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, nil, err
		}
	default:
		if err := json.Unmarshal(b, &fields); err != nil {
			return nil, nil, err
		}
		if fields == nil {
			return nil, nil, errors.New("not an object")
		}
		if _, ok := fields["renditions"]; !ok {
			if _, ok := fields["track"]; ok {
				var e legacyEntry
				if err := json.Unmarshal(b, &e); err != nil {
					return nil, nil, err
				}
				entries, fields = []legacyEntry{e}, nil
			} else {
				return nil, nil, errors.New("no renditions")
			}
		}
	}
	if fields != nil {
		var rs map[string]json.RawMessage
		if err := json.Unmarshal(fields["renditions"], &rs); err != nil {
			return nil, nil, fmt.Errorf("renditions: %w", err)
		}
		for name, cfg := range rs {
			if err := rendition(name, cfg); err != nil {
				return nil, nil, fmt.Errorf("rendition %q: %w", name, err)
			}
		}
		return fields, nil, nil
	}
	for i, e := range entries {
		if e.Track == nil || e.Track.Name == nil || e.Config == nil {
			return nil, nil, fmt.Errorf("rendition %d: want {track: {name}, config}", i)
		}
		if err := rendition(*e.Track.Name, e.Config); err != nil {
			return nil, nil, fmt.Errorf("rendition %q: %w", *e.Track.Name, err)
		}
		if i == 0 && e.Track.Priority != nil {
			if prio, err = readPriority(e.Track.Priority); err != nil {
				return nil, nil, err
			}
		}
	}
	return nil, prio, nil
}

// decodeSection decodes a section in any of its forms: its renditions with
// decode, and its priority (a section "priority" field wins over the one
// the older forms carry per track). It also returns the section object's
// fields, nil for the older forms.
func decodeSection[R any](b []byte, decode func(*R, []byte) error) (map[string]R, map[string]json.RawMessage, *uint8, error) {
	renditions := make(map[string]R)
	fields, prio, err := sectionForms(b, func(name string, cfg json.RawMessage) error {
		var r R
		if err := decode(&r, cfg); err != nil {
			return err
		}
		renditions[name] = r
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if v, ok := fields["priority"]; ok && !isNull(v) {
		if prio, err = readPriority(v); err != nil {
			return nil, nil, nil, err
		}
	}
	return renditions, fields, prio, nil
}

// UnmarshalJSON implements json.Unmarshaler, accepting every form of the
// section.
func (s *VideoSection) UnmarshalJSON(b []byte) error {
	renditions, fields, prio, err := decodeSection(b, (*VideoRendition).UnmarshalJSON)
	if err != nil {
		return err
	}
	*s = VideoSection{Renditions: renditions, Priority: prio}
	if fields == nil {
		return nil
	}
	o := object{m: fields}
	if v, ok := fields["display"]; ok && !isNull(v) {
		var d struct {
			Width, Height json.RawMessage
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("display: %w", err)
		}
		do := object{m: map[string]json.RawMessage{"width": d.Width, "height": d.Height}}
		s.Display = &Display{Width: do.integer("width"), Height: do.integer("height")}
		if do.err != nil {
			return fmt.Errorf("display: %w", do.err)
		}
	}
	s.Rotation = o.number("rotation")
	s.Flip = o.boolean("flip")
	return o.err
}

// UnmarshalJSON implements json.Unmarshaler, accepting every form of the
// section.
func (s *AudioSection) UnmarshalJSON(b []byte) error {
	renditions, _, prio, err := decodeSection(b, (*AudioRendition).UnmarshalJSON)
	if err != nil {
		return err
	}
	*s = AudioSection{Renditions: renditions, Priority: prio}
	return nil
}

func readPriority(b json.RawMessage) (*uint8, error) {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil || f < 0 || f > 255 || f != math.Trunc(f) {
		return nil, fmt.Errorf("priority %s is not a u8", b)
	}
	p := uint8(f)
	return &p, nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (r *VideoRendition) UnmarshalJSON(b []byte) error {
	o, err := newObject(b)
	if err != nil {
		return err
	}
	*r = VideoRendition{
		Codec:               o.str("codec", true),
		Container:           o.container(),
		Description:         o.hex("description"),
		CodedWidth:          o.integer("codedWidth"),
		CodedHeight:         o.integer("codedHeight"),
		DisplayAspectWidth:  o.integer("displayAspectWidth", "displayRatioWidth"),
		DisplayAspectHeight: o.integer("displayAspectHeight", "displayRatioHeight"),
		Framerate:           o.number("framerate"),
		Bitrate:             o.integer("bitrate"),
		OptimizeForLatency:  o.optBool("optimizeForLatency"),
		Jitter:              o.integer("jitter"),
		Timeline:            o.timeline(),
		Broadcast:           o.str("broadcast", false),
	}
	return o.err
}

// UnmarshalJSON implements json.Unmarshaler. A missing sampleRate or
// numberOfChannels reads as 0.
func (r *AudioRendition) UnmarshalJSON(b []byte) error {
	o, err := newObject(b)
	if err != nil {
		return err
	}
	*r = AudioRendition{
		Codec:            o.str("codec", true),
		Container:        o.container(),
		Description:      o.hex("description"),
		SampleRate:       o.integer("sampleRate"),
		NumberOfChannels: o.integer("numberOfChannels"),
		Bitrate:          o.integer("bitrate"),
		Jitter:           o.integer("jitter"),
		Timeline:         o.timeline(),
		Broadcast:        o.str("broadcast", false),
	}
	return o.err
}

// object reads the fields of a JSON object leniently, keeping the first
// error.
type object struct {
	m   map[string]json.RawMessage
	err error
}

func newObject(b []byte) (*object, error) {
	o := &object{}
	if err := json.Unmarshal(b, &o.m); err != nil {
		return nil, err
	}
	if o.m == nil {
		return nil, errors.New("not an object")
	}
	return o, nil
}

// get returns the first present, non-null value among keys.
func (o *object) get(keys ...string) (string, json.RawMessage) {
	for _, k := range keys {
		if v, ok := o.m[k]; ok && v != nil && !isNull(v) {
			return k, v
		}
	}
	return "", nil
}

func (o *object) fail(key string, err error) {
	if o.err == nil {
		o.err = fmt.Errorf("%s: %w", key, err)
	}
}

func (o *object) str(key string, required bool) string {
	_, v := o.get(key)
	if v == nil {
		if required {
			o.fail(key, errors.New("missing"))
		}
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		o.fail(key, err)
	}
	return s
}

func (o *object) number(key string) float64 {
	_, v := o.get(key)
	if v == nil {
		return 0
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		o.fail(key, err)
		return 0
	}
	return f
}

// integer reads a non-negative integer of at most 2^53−1, rounding a
// non-integral number up (a jitter of 33.3 ms reads as 34).
func (o *object) integer(keys ...string) int {
	k, v := o.get(keys...)
	if v == nil {
		return 0
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		o.fail(k, err)
		return 0
	}
	f = math.Ceil(f)
	if f < 0 || f > maxU53 {
		o.fail(k, fmt.Errorf("%v out of range", f))
		return 0
	}
	return int(f)
}

func (o *object) boolean(key string) bool {
	b := o.optBool(key)
	return b != nil && *b
}

func (o *object) optBool(key string) *bool {
	_, v := o.get(key)
	if v == nil {
		return nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		o.fail(key, err)
		return nil
	}
	return &b
}

func (o *object) hex(key string) HexBytes {
	_, v := o.get(key)
	if v == nil {
		return nil
	}
	var h HexBytes
	if err := h.UnmarshalJSON(v); err != nil {
		o.fail(key, err)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

func (o *object) container() *Container {
	_, v := o.get("container")
	if v == nil {
		return nil
	}
	c := new(Container)
	if err := c.UnmarshalJSON(v); err != nil {
		o.fail("container", err)
		return nil
	}
	return c
}

func (o *object) timeline() *Timeline {
	_, v := o.get("timeline")
	if v == nil {
		return nil
	}
	t, err := newObject(v)
	if err != nil {
		o.fail("timeline", err)
		return nil
	}
	tl := &Timeline{Track: t.str("track", true), Timescale: t.integer("timescale"), Wall: t.integer("wall")}
	if t.err != nil {
		o.fail("timeline", t.err)
	}
	return tl
}

// NewCatalog describes tracks as a catalog: each track becomes a rendition
// named after it in the section of its kind, with a legacy or cmaf
// container, and each section gets the priority of its first track by
// name. It fails if a name is used twice.
func NewCatalog(tracks []Track) (*Catalog, error) {
	c := &Catalog{}
	sorted := slices.Clone(tracks)
	slices.SortFunc(sorted, func(a, b Track) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	seen := make(map[string]bool, len(sorted))
	for i := range sorted {
		t := &sorted[i]
		if t.Name == "" {
			return nil, errors.New("catalog: track without a name")
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("catalog: track %q listed twice", t.Name)
		}
		seen[t.Name] = true
		cont := &Container{Kind: t.container()}
		if cont.Kind == ContainerCMAF {
			cont.Init = t.Init
		}
		jitter := int((t.Jitter + time.Millisecond - 1) / time.Millisecond)
		prio := t.priority()
		switch t.Kind {
		case KindVideo:
			if c.Video == nil {
				c.Video = &VideoSection{Renditions: make(map[string]VideoRendition), Priority: &prio}
			}
			c.Video.Renditions[t.Name] = VideoRendition{
				Codec:       t.Codec,
				Container:   cont,
				Description: t.DecoderConfig,
				CodedWidth:  t.Width,
				CodedHeight: t.Height,
				Framerate:   t.Framerate,
				Bitrate:     t.Bitrate,
				Jitter:      jitter,
			}
		case KindAudio:
			if c.Audio == nil {
				c.Audio = &AudioSection{Renditions: make(map[string]AudioRendition), Priority: &prio}
			}
			c.Audio.Renditions[t.Name] = AudioRendition{
				Codec:            t.Codec,
				Container:        cont,
				Description:      t.DecoderConfig,
				SampleRate:       t.SampleRate,
				NumberOfChannels: t.Channels,
				Bitrate:          t.Bitrate,
				Jitter:           jitter,
			}
		default:
			return nil, fmt.Errorf("catalog: track %q has no kind", t.Name)
		}
	}
	return c, nil
}

// Tracks lists the catalog's renditions as tracks, video first, each kind
// sorted by name. Every rendition is listed, whatever its container; the
// priority is the section's, or the default for the kind.
func (c *Catalog) Tracks() []Track {
	var out []Track
	if c.Video != nil {
		for _, name := range sortedKeys(c.Video.Renditions) {
			r := c.Video.Renditions[name]
			t := Track{
				Name:          name,
				Kind:          KindVideo,
				Codec:         r.Codec,
				DecoderConfig: r.Description,
				Width:         r.CodedWidth,
				Height:        r.CodedHeight,
				Framerate:     r.Framerate,
				Bitrate:       r.Bitrate,
				Jitter:        time.Duration(r.Jitter) * time.Millisecond,
				Priority:      PriorityVideo,
			}
			if c.Video.Priority != nil {
				t.Priority = *c.Video.Priority
			}
			setContainer(&t, r.Container)
			out = append(out, t)
		}
	}
	if c.Audio != nil {
		for _, name := range sortedKeys(c.Audio.Renditions) {
			r := c.Audio.Renditions[name]
			t := Track{
				Name:          name,
				Kind:          KindAudio,
				Codec:         r.Codec,
				DecoderConfig: r.Description,
				SampleRate:    r.SampleRate,
				Channels:      r.NumberOfChannels,
				Bitrate:       r.Bitrate,
				Jitter:        time.Duration(r.Jitter) * time.Millisecond,
				Priority:      PriorityAudio,
			}
			if c.Audio.Priority != nil {
				t.Priority = *c.Audio.Priority
			}
			setContainer(&t, r.Container)
			out = append(out, t)
		}
	}
	return out
}

func setContainer(t *Track, c *Container) {
	t.Container = ContainerLegacy
	if c != nil {
		t.Container = c.Kind
		t.Init = c.Init
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// decodeBase64 decodes the cmaf init: standard alphabet, padded as the
// schema says, or unpadded.
func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}
