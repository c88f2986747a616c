package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// applyMergePatch applies an RFC 7396 JSON Merge Patch to a JSON document.
// The 0.3.5 catalog reader treats every frame after the first of a catalog
// group as such a patch; the reference publishers never send any, but a
// reader must apply them.
func applyMergePatch(doc, patch []byte) ([]byte, error) {
	var d, p any
	if err := decodeJSONNumbers(doc, &d); err != nil {
		return nil, fmt.Errorf("merge patch: document: %w", err)
	}
	if err := decodeJSONNumbers(patch, &p); err != nil {
		return nil, fmt.Errorf("merge patch: %w", err)
	}
	return json.Marshal(mergeValue(d, p))
}

func decodeJSONNumbers(b []byte, v *any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}

func mergeValue(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = make(map[string]any, len(pm))
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
		} else {
			tm[k] = mergeValue(tm[k], v)
		}
	}
	return tm
}
