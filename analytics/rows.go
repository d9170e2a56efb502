package analytics

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/afftok/webhookd/jsonvalue"
)

// decodeCompactRows reads chDB's JSONCompactEachRow output, a JSON array a
// line, into rows of the values encoding/json would give with UseNumber
// (jsonvalue): decoding each line with json.Decoder was a quarter of the
// 1-minute time series' time (5,760 rows). FuzzDecodeCompactRows holds the
// two equal.
//
// An error names the row by its number, not by its text: rows hold logged
// request and response bodies.
func decodeCompactRows(b []byte) ([][]any, error) {
	var rows [][]any
	for n := 1; len(b) > 0; n++ {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		// Blank as encoding/json's reader took it (bytes.TrimSpace).
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		d := jsonvalue.NewReader(line)
		if c, _ := d.Peek(); c != '[' {
			return nil, fmt.Errorf("decode chDB row %d: not an array", n)
		}
		v, err := d.Value()
		if err == nil && !d.AtEnd() {
			err = errors.New("data after the row")
		}
		if err != nil {
			return nil, fmt.Errorf("decode chDB row %d: %w", n, err)
		}
		rows = append(rows, v.([]any))
	}
	return rows, nil
}
