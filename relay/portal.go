package relay

import "net/http"

// newPortal makes the handler of the portal host's WebUI ports: the login
// and the portal. Until the portal package is wired in, the portal host
// answers as an unknown name does.
func (s *Server) newPortal() (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { notFound(w) }), nil
}
