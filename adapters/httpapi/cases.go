package httpapi

// caseRoutes are the case routes.
func (s *Server) caseRoutes() []op { return nil }
