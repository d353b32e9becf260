package store

// An event's payload — the headers it was delivered with and its body — is
// stored as one compressed value (SPEC §16, issue 27): webhook bodies are
// small JSON documents whose keys every delivery of a vendor repeats, so
// S2 (klauspost/compress, pure Go) with a dictionary of those keys and of
// the vendors' headers stores a 316-byte Slack body and its headers (521
// bytes packed) in 230 bytes, for about 2 µs of the sender's goroutine.
// zstd with the same dictionary (codec 1, still read) stored them in 220
// bytes but took 8 µs alone and 18 µs under load: every encode copies its
// 256 KiB match table from the dictionary's, and the copies serialised the
// door. The API and the page see the original bytes, and the body's SHA-256
// is the original's (computed at the door). The payload is purged as a
// whole.

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Codecs: the first byte of a stored payload. A codec, once written, is
// read for ever: a new dictionary is a new codec, never a changed file.
const (
	codecRaw    = 0 // headers and body as they are (compressing did not pay)
	codecDict   = 1 // zstd with the raw dictionary payloadDict (id 1); read only
	codecS2Dict = 2 // an S2 block with payloadDict as its dictionary
)

// payloadDict is codecs 1 and 2's preset dictionary: the header names and values
// and the JSON keys the built-in sources send. Its bytes are fixed
// (TestPayloadDictionaryIsFixed pins its hash).
//
//go:embed payload.dict
var payloadDict []byte

// MaxPayloadBytes is the most a stored payload can decode to: the largest
// body the door accepts (ORCHESTRATOR_MAX_BODY_BYTES at its maximum, 64 MiB)
// plus the headers the HTTP server lets through (64 KiB) and their framing.
// A stored value that declares more is corrupt or crafted (a row someone
// edited, a snapshot handed to restore): it is refused before anything is
// allocated, so a 30-byte row never costs gigabytes (issue 43).
const MaxPayloadBytes = 64<<20 + 1<<20

// s2Dict encodes and decodes codec 2 (safe for concurrent use); decoder
// reads codec 1 (DecodeAll runs on the caller's goroutine).
var (
	s2Dict  = s2.MakeDict(payloadDict, nil)
	decoder = mustDecoder()
)

func mustDecoder() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderDictRaw(1, payloadDict), zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxPayloadBytes))
	if err != nil {
		panic(err)
	}
	return d
}

// encodePayload packs headers (sorted by name) and the body: a count, then
// each name and value with its length, then the body; compressed when that
// is smaller. Nil when there is neither.
func encodePayload(headers map[string]string, body []byte) []byte {
	if len(headers) == 0 && body == nil {
		return nil
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	slices.Sort(names)
	raw := make([]byte, 1, 1+len(body)+32*len(names))
	raw[0] = codecRaw
	raw = binary.AppendUvarint(raw, uint64(len(names)))
	for _, k := range names {
		raw = binary.AppendUvarint(raw, uint64(len(k)))
		raw = append(raw, k...)
		raw = binary.AppendUvarint(raw, uint64(len(headers[k])))
		raw = append(raw, headers[k]...)
	}
	raw = append(raw, body...)

	out := make([]byte, 1+s2.MaxEncodedLen(len(raw)-1))
	out[0] = codecS2Dict
	out = out[:1+len(s2Dict.Encode(out[1:], raw[1:]))]
	if len(out) >= len(raw) {
		return raw
	}
	return out
}

// errMalformedPayload is a stored payload that cannot be what the door
// wrote: the event is shown as unreadable, nothing else breaks.
var errMalformedPayload = errors.New("store: malformed payload")

// decodePayload unpacks what encodePayload packed.
func decodePayload(p []byte) (map[string]string, []byte, error) {
	return decodePayloadMax(p, MaxPayloadBytes)
}

// decodePayloadMax is decodePayload refusing, before it allocates, a
// payload that declares more than limit decoded bytes.
func decodePayloadMax(p []byte, limit int) (map[string]string, []byte, error) {
	if len(p) == 0 {
		return nil, nil, nil
	}
	var raw []byte
	switch p[0] {
	case codecRaw:
		raw = p[1:]
	case codecS2Dict:
		n, err := s2.DecodedLen(p[1:])
		if err != nil || n > limit {
			return nil, nil, errMalformedPayload
		}
		if raw, err = s2Dict.Decode(make([]byte, n), p[1:]); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errMalformedPayload, err)
		}
	case codecDict:
		// A frame that declares its size is checked before decoding; one
		// that does not is bounded by the decoder's memory limit.
		var h zstd.Header
		if err := h.Decode(p[1:]); err != nil || (h.HasFCS && h.FrameContentSize > uint64(limit)) {
			return nil, nil, errMalformedPayload
		}
		var err error
		if raw, err = decoder.DecodeAll(p[1:], nil); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errMalformedPayload, err)
		}
		if len(raw) > limit {
			return nil, nil, errMalformedPayload
		}
	default:
		return nil, nil, fmt.Errorf("store: payload codec %d unknown to this build", p[0])
	}
	bad := errMalformedPayload
	n, k := binary.Uvarint(raw)
	if k <= 0 || n > uint64(len(raw)) {
		return nil, nil, bad
	}
	raw = raw[k:]
	str := func() (string, bool) {
		l, k := binary.Uvarint(raw)
		if k <= 0 || l > uint64(len(raw)-k) {
			return "", false
		}
		s := string(raw[k : k+int(l)])
		raw = raw[k+int(l):]
		return s, true
	}
	var headers map[string]string
	if n > 0 {
		headers = make(map[string]string, n)
	}
	for range n {
		name, ok1 := str()
		val, ok2 := str()
		if !ok1 || !ok2 {
			return nil, nil, bad
		}
		headers[name] = val
	}
	return headers, raw, nil
}

// EncodePayload is the stored form of headers and a body (payload column),
// for tools and benchmarks that write events straight into a database.
func EncodePayload(headers map[string]string, body []byte) []byte {
	return encodePayload(headers, body)
}
