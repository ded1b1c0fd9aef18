"""Database layer: models, migrations, sessions and the operations that must stay correct."""
