package analytics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// decodeRowsReference is how rows were read before decodeCompactRows:
// encoding/json, a line at a time.
func decodeRowsReference(b []byte) ([][]any, error) {
	var rows [][]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var row []any
		if err := dec.Decode(&row); err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, sc.Err()
}

// wellFormed reports whether every non-blank line of b is one JSON array:
// the output decodeCompactRows reads, on which it must give what
// encoding/json gives.
func wellFormed(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if line[0] != '[' || !json.Valid(line) {
			return false
		}
	}
	return true
}

var rowSeeds = []string{
	`["ex",1795868700,[1,2,3,4,5],[]]` + "\n" + `["lat",1795868760,[],[12.5,-3e-2,0,1E+9]]` + "\n",
	`["a \"quoted\" \\ value\n", "\u00e9t\u00e9", "\ud83d\ude00", "\ud800", "é", null, true, false]`,
	"[\"\xff\xfe invalid utf-8\", \"ok\"]\n\n  \n[{\"k\": [1, {\"n\": null}], \"k\": 2}, {}]\r\n[ ]",
	`[-0, 0.5, -12.25e10, 123456789012345678901234567890]`,
	`[[[[[]]]], [1,[2,[3]]]]`,
	`[1,]`, `[01]`, `[1.]`, `[-]`, `[1e]`, `["open`, `[nul]`, `[1] [2]`, `{"a":1}`, `["tab	in"]`, `[` + "\x00" + `]`,
}

func FuzzDecodeCompactRows(f *testing.F) {
	for _, s := range rowSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeCompactRows(b)
		if !wellFormed(b) {
			// A line that is not JSON is an error.
			for _, line := range bytes.Split(b, []byte("\n")) {
				if line = bytes.TrimSpace(line); len(line) > 0 && !json.Valid(line) && err == nil {
					t.Fatalf("%q: read as %#v, want an error", b, got)
				}
			}
			return
		}
		want, werr := decodeRowsReference(b)
		if werr != nil {
			t.Fatalf("the reference refused well-formed rows: %v", werr)
		}
		if err != nil {
			t.Fatalf("%q: %v; encoding/json reads %v", b, err, want)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %#v\nwant %#v", b, got, want)
		}
	})
}

// TestDecodeCompactRowsRefusesWhatIsNotRows: every malformed row is an
// error naming the row, never a value made up.
func TestDecodeCompactRowsRefusesWhatIsNotRows(t *testing.T) {
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	for _, s := range []string{`[1,]`, `[01]`, `[1.]`, `[-]`, `[1e]`, `["open`, `[nul]`, `[1] [2]`, `{"a":1}`, "[\"tab\x01\"]", `[1`, `[{"a" 1}]`, `[{1:2}]`, deep,
		`["secret-token", 1,]`} {
		rows, err := decodeCompactRows([]byte(s))
		if err == nil || !strings.Contains(err.Error(), "decode chDB row 1") {
			t.Errorf("%.40q: %v, %v; want an error naming row 1", s, rows, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows the row's text: %v", err)
		}
	}
}
