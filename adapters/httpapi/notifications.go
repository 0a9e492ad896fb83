package httpapi

// notificationRoutes are the notification routes.
func (s *Server) notificationRoutes() []op { return nil }
