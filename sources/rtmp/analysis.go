package rtmp

import (
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// analysisPeriod is how much media gortmplib's Reader reads before it
// reports a publisher's tracks (its unexported analyzePeriod).
const analysisPeriod = 2 * time.Second

// analysisConn cuts gortmplib's track analysis short. The Reader reads
// messages until 2 s of media passed, since a publisher does not say how
// many tracks it will send; but encoders do say it, in the onMetaData they
// send first (videocodecid, audiocodecid), followed by each track's
// sequence header. Once the metadata's tracks all have their
// configuration, analysisConn hands the Reader one more message of its
// own, stamped 2 s after the first media message: the Reader ends its
// analysis there, with every track it would have found. That message is
// filtered out of what the Reader replays (skipInjected), so no callback
// ever sees it.
//
// Without metadata, or with multitrack messages (the metadata does not
// count tracks then), nothing is cut short.
type analysisConn struct {
	gortmplib.Conn

	now      func() time.Time
	firstAt  time.Time // when the first message arrived
	metadata bool      // onMetaData seen
	wantV    bool      // the metadata announces video
	wantA    bool      // and audio
	haveV    bool      // video track 0 is configured
	haveA    bool      // audio track 0 is configured
	multi    bool      // a multitrack message was seen
	started  bool      // a media message set the Reader's start time
	start    time.Duration
	injected message.Message // the message that ended the analysis
	done     bool            // the analysis is over: messages pass untouched
}

func newAnalysisConn(c gortmplib.Conn) *analysisConn {
	return &analysisConn{Conn: c, now: time.Now}
}

func (a *analysisConn) Read() (message.Message, error) {
	if a.done {
		return a.Conn.Read()
	}
	if a.injected == nil && a.complete() {
		a.injected = a.endMessage()
		return a.injected, nil
	}
	msg, err := a.Conn.Read()
	if err != nil {
		return msg, err
	}
	if a.firstAt.IsZero() {
		a.firstAt = a.now()
	}
	a.observe(msg)
	return msg, nil
}

// complete reports whether the tracks the metadata announced are all
// configured, so the analysis can end.
func (a *analysisConn) complete() bool {
	return a.metadata && !a.multi && a.started && (a.wantV || a.wantA) &&
		(!a.wantV || a.haveV) && (!a.wantA || a.haveA)
}

// endMessage returns a message that makes the Reader's analysis end and
// changes none of its tracks: media time 2 s after the start, for a track
// that is configured already.
func (a *analysisConn) endMessage() message.Message {
	dts := a.start + analysisPeriod
	if a.haveV {
		return &message.VideoExFramesX{DTS: dts}
	}
	return &message.AudioExCodedFrames{DTS: dts}
}

// observe follows what the Reader learns from msg, with its rules: which
// messages set the start time of the analysis, and which configure track 0.
func (a *analysisConn) observe(msg message.Message) {
	mediaTime := func(dts time.Duration) {
		if !a.started {
			a.started, a.start = true, dts
		}
	}
	switch m := msg.(type) {
	case *message.DataAMF0:
		a.readMetadata(m.Payload)
	case *message.Video:
		mediaTime(m.DTS)
		if m.Type == message.VideoTypeConfig &&
			((m.Codec == message.CodecH264 && m.AVCConfig != nil) || m.Codec == message.CodecH265) {
			a.haveV = true
		}
	case *message.VideoExSequenceStart:
		a.haveV = true
	case *message.VideoExCodedFrames:
		mediaTime(m.DTS)
	case *message.VideoExFramesX:
		mediaTime(m.DTS)
	case *message.Audio:
		mediaTime(m.DTS)
		if m.Codec != message.CodecMPEG4Audio || (m.AACType == message.AudioAACTypeConfig && m.AACConfig != nil) {
			a.haveA = true
		}
	case *message.AudioExCodedFrames:
		// The Reader configures an extended audio track from its first
		// coded frame (with the sequence start before it, if any).
		mediaTime(m.DTS)
		a.haveA = true
	case *message.VideoExMultitrack, *message.AudioExMultitrack:
		a.multi = true
	}
}

// readMetadata takes the tracks an onMetaData (or @setDataFrame
// onMetaData) announces.
func (a *analysisConn) readMetadata(payload amf0.Data) {
	for i, v := range payload {
		if s, ok := v.(string); !ok || s != "onMetaData" || i+1 >= len(payload) {
			continue
		}
		var obj amf0.Object
		switch o := payload[i+1].(type) {
		case amf0.Object:
			obj = o
		case amf0.ECMAArray:
			obj = amf0.Object(o)
		default:
			return
		}
		a.metadata = true
		a.wantV = announced(obj, "videocodecid")
		a.wantA = announced(obj, "audiocodecid")
		return
	}
}

// announced reports whether a metadata codec id is present and not empty.
func announced(obj amf0.Object, key string) bool {
	v, ok := obj.Get(key)
	if !ok {
		return false
	}
	switch v := v.(type) {
	case float64:
		return v != 0
	case string:
		return v != ""
	case bool:
		return v
	}
	return true
}

// readTracks runs gortmplib's track analysis on c, cut short by the
// metadata where it can be (analysisConn), and returns the Reader set to
// read the media that follows, how long the analysis took from the first
// message, and whether the metadata ended it.
func readTracks(c gortmplib.Conn) (r *gortmplib.Reader, took time.Duration, fromMetadata bool, err error) {
	ac := newAnalysisConn(c)
	r = &gortmplib.Reader{Conn: ac}
	if err := r.Initialize(); err != nil {
		return nil, 0, false, err
	}
	ac.done = true
	r.Conn = &skipInjected{Conn: r.Conn, injected: ac.injected}
	return r, time.Since(ac.firstAt).Round(time.Millisecond), ac.injected != nil, nil
}

// skipInjected is the Reader's connection after the analysis: it drops the
// message analysisConn injected from the replay of what was read.
type skipInjected struct {
	gortmplib.Conn
	injected message.Message
}

func (s *skipInjected) Read() (message.Message, error) {
	for {
		msg, err := s.Conn.Read()
		if err != nil || s.injected == nil || msg != s.injected {
			return msg, err
		}
		s.injected = nil
	}
}
