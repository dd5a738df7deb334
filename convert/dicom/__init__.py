"""DICOM reading: scanning, series assembly, pixel decoding, multi-frame/mosaic, sidecars."""
