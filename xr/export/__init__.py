"""Approved reports out of the workstation: plain text, HL7 FHIR R4 and DICOM Basic Text SR (the formats:
xr/export/registry.py)."""
