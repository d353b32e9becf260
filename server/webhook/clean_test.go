package webhook

import (
	"bytes"
	"testing"
)

// The direct cut of Slack's token agrees with the decoder's, whatever the
// body: every shape the shortcut takes and every shape it must refuse.
var blankCases = []string{
	`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","type":"event_callback","event_id":"Ev1"}`,
	`{"token":"","type":"event_callback"}`,
	`{"type":"event_callback"}`,
	`{ "token" : "a\"b\\c" , "x":1}`,
	"{\"token\"\n:\t\"abc\"}",
	`{"token":12,"x":"y"}`,
	`{"event":{"token":"nested"},"type":"x"}`,
	`{"event":{"token":"nested"},"token":"top"}`,
	`{"a":"say \"token","token":"s"}`,
	`{"\u0074oken":"escaped","x":"y"}`,
	`{"\u0074oken":"first","\u0074oken":""}`,
	`{"token":"first","token":""}`,
	`{"token":"","token":"second"}`,
	`{"text":"caf\u00e9","token":"t"}`,
	`{"token":"a"} {"token":"b"}`,
	`{"token":null}`,
}

func TestBlankParsedStringAgreesWithTheDecoder(t *testing.T) {
	for _, c := range blankCases {
		checkBlank(t, []byte(c))
	}
}

func checkBlank(t *testing.T, body []byte) {
	t.Helper()
	m, err := parseJSON(body)
	if err != nil {
		return
	}
	if got, want := blankParsedString(body, m, "token"), blankTopLevelString(body, "token"); !bytes.Equal(got, want) {
		t.Fatalf("blankParsedString(%s) = %s, the decoder's way gives %s", body, got, want)
	}
}

func FuzzBlankToken(f *testing.F) {
	for _, c := range blankCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkBlank(t, body) })
}
