"""Ingest (ETL): readers per format, normalisation and validation, quarantine, upsert."""

from embedlake.ingest.pipeline import IngestReport, delete_document, ingest_object, ingest_path

__all__ = ["IngestReport", "delete_document", "ingest_object", "ingest_path"]
