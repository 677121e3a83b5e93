"""Where DICOM comes from: the landing folder, a C-STORE listener, a DICOMweb poller (one interface, :mod:`.base`)."""
