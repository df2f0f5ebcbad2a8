"""What the 3D Slicer module does beyond GUI and scene work, without Slicer (tested with plain pytest).

The module file ``SR4ZCT.py`` keeps the widgets, the MRML nodes and the DICOM database lookups; this
package holds the rest: which options the panel shows (:mod:`.panel_options`), the geometry of a volume
node from its numbers and its DICOM attributes, with the warnings the panel shows (:mod:`.node_geometry`),
the folder of one run's temporary files (:mod:`.run_folder`) and the queue of a study's volumes
(:mod:`.study_queue`).
"""
