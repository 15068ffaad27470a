"""The contract between the roles: what a file handed from one organisation to another is.

The pydantic models of every artifact kind (``models``), reading and writing them (``io``, with
bounded, confined reads of another party's files in ``files``), signatures (``signing``), the
binding of a certificate to the regulator's spec (``binding``), declared architectures against the
weights a file holds (``architecture``), the identity of the data an artifact was computed from
(``data_identity``), torch weights as tensors without pickle (``torch_state``), checked ONNX graphs
(``onnx_check``) and the errors a reader raises (``errors``). Everything here is about files; no
module here runs a certificate.
"""
