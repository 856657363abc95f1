from tests.integration.servers import mosquitto, postgres_server, postgres_url

__all__ = ["mosquitto", "postgres_server", "postgres_url"]
