//go:build !linux

package wire

import "errors"

// parkerSys: no Parker outside Linux; the relay keeps a goroutine per
// connection there.
type parkerSys struct{}

type parkSys struct{}

func (s *parkerSys) start(p *Parker) error {
	return errors.New("wire.NewParker: not on this platform")
}
func (s *parkerSys) stop() {}
func (s *parkerSys) arm(c *Conn, token uint64) error {
	return errors.New("wire.Park: not on this platform")
}
func (s *parkerSys) disarm(c *Conn) {}
