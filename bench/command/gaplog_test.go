package main

import (
	"reflect"
	"testing"
)

func TestMaxGapsWindow(t *testing.T) {
	l, err := newLog(encodeLog(4, [][][2]int64{
		// Before, across the start, inside, after the window [1000, 2000].
		{{100, 900}, {950, 1100}, {1500, 1530}, {2100, 9000}},
		// Nothing in the window.
		{{10, 20}},
		// The ring wrapped: the first two records were overwritten by
		// the last two, which are the ones read.
		{{1200, 1300}, {1400, 1450}, {3000, 3001}, {3002, 3003}, {1600, 4600}, {1700, 1710}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := l.maxGaps(1000, 2000)
	want := []float64{0.15, 0, 3}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("maxGaps = %v, want %v", got, want)
	}
}

func TestNewLogRejectsShortOrForeignData(t *testing.T) {
	w := encodeLog(4, [][][2]int64{{}, {}})
	if _, err := newLog(w[:len(w)-1]); err == nil {
		t.Error("a log cut short was accepted")
	}
	w[0] = 0
	if _, err := newLog(w); err == nil {
		t.Error("a log without the probe's magic was accepted")
	}
}
