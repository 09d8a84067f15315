from deployments import serve_all

serve_all()
