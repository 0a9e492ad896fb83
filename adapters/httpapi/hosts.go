package httpapi

// hostRoutes are the host routes.
func (s *Server) hostRoutes() []op { return nil }
