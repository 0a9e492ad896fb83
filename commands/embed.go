package commands

import "io/fs"

// mustSub returns the subtree dir of f; a missing directory is a build mistake.
func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic("commands: embedded " + dir + ": " + err.Error())
	}
	return sub
}
