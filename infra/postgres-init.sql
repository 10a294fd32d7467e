-- One PostgreSQL, two databases: Prefect's orchestration state and MLflow's tracking/registry store.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
