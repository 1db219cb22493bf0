"""Example trainers: plain functions ``train(config, report) -> metrics``."""
