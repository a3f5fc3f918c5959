"""The standalone mode (`make run`, like `airflow standalone`): `stack` starts and supervises
every process, `servers` the embedded PostgreSQL and Valkey, `example*` the example session and
`scripted_model` the offline stand-in for a model that OpenCode talks to."""
