package projections

// SetSeenKeepPositions sets how many of the newest positions PruneSeen keeps,
// and returns a function that restores it.
func SetSeenKeepPositions(n int64) (restore func()) {
	old := seenKeepPositions
	seenKeepPositions = n
	return func() { seenKeepPositions = old }
}
