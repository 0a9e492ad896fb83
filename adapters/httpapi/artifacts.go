package httpapi

// artifactRoutes are the artifact routes.
func (s *Server) artifactRoutes() []op { return nil }
