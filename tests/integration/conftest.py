from tests.integration.servers import mosquitto, mosquitto_tls, postgres_server, postgres_url

__all__ = ["mosquitto", "mosquitto_tls", "postgres_server", "postgres_url"]
