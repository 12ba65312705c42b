//go:build !linux

package kafka

import "errors"

// changeWatch is inotify's, on Linux; elsewhere each group-commit round
// walks the data directory instead.
type changeWatch struct{}

func watchChanges(string) (*changeWatch, *pathChanges, error) { return nil, nil, errors.ErrUnsupported }

func (*changeWatch) drain(*pathChanges) error { return errors.ErrUnsupported }

func (*changeWatch) close() {}
