"""Export of results to a PACS (STOW-RS or C-STORE) and FHIR R4 ImagingStudy resources; no Dagster here."""
