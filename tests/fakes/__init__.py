"""Local fakes of vendor HTTP APIs: small http.server threads on 127.0.0.1, never the network."""
