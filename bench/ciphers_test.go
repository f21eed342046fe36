package bench

import (
	"math"
	"testing"
	"time"
)

// The ciphers' figures are times per GB of messages that really went
// through (MeasureCiphers checks what it opened against what it sealed),
// each a plausible number of seconds.
func TestMeasureCiphers(t *testing.T) {
	cs, err := MeasureCiphers(100 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Name != "ChaCha20-Poly1305" || cs[1].Name != "AES-128-GCM" {
		t.Fatalf("ciphers %+v; want ChaCha20-Poly1305 and AES-128-GCM", cs)
	}
	for _, c := range cs {
		for _, v := range []float64{c.Seal, c.Open} {
			// Slower than 1 MB/s or faster than 1 TB/s is no measurement.
			if math.IsNaN(v) || v < 0.001 || v > 1000 {
				t.Errorf("%s: %v s/GB", c.Name, v)
			}
		}
		t.Logf("%s, %d B: seal %.2f s/GB, open %.2f s/GB", c.Name, c.Message, c.Seal, c.Open)
	}
}
