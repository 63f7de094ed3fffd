"""HTTP/1.1 codec: llhttp (httptools) for parsing, outwork's own strict checks on top."""
