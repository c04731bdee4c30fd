"""HTTP and WebSocket edges: routes, middleware, error rendering, OpenAPI."""
