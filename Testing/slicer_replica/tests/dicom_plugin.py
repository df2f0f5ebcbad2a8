"""Loading a DICOM series into the real scene the way Slicer's DICOMScalarVolumePlugin does.

Slice order by ImagePositionPatient along the ImageOrientationPatient normal, Slicer's own reader
(``vtkSlicerVolumesLogic.AddArchetypeScalarVolume`` over the files), slices reversed if the IJK system
came out left-handed, ``DICOM.instanceUIDs`` in slice order, and patient/study items in the subject
hierarchy with the volume under the study.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.split("\\") if v.strip()]


def sorted_by_position(database, files) -> list[str]:
    files = [str(f) for f in files]
    orientation = np.array(_numbers(database.fileValue(files[0], "0020,0037")))
    normal = np.cross(orientation[:3], orientation[3:])
    return sorted(files, key=lambda f: float(np.dot(normal, _numbers(database.fileValue(f, "0020,0032")))))


def load_series(app, database, files, name: str):
    """The volume node the DICOM module makes from ``files`` (all of one series)."""
    files = sorted_by_position(database, files)
    fileList = vtk.vtkStringArray()
    for f in files:
        fileList.InsertNextValue(f)
    node = app.volumesLogic.AddArchetypeScalarVolume(files[0], name, 0, fileList)
    assert node is not None, "Slicer's reader could not read the series"
    ijkToRas = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijkToRas)
    if not slicer.vtkMRMLVolumeNode.IsIJKCoordinateSystemRightHanded(ijkToRas):
        slicer.vtkMRMLVolumeNode.ReverseSliceOrder(node.GetImageData(), ijkToRas)
        node.SetIJKToRASMatrix(ijkToRas)
        files = list(reversed(files))
    node.SetAttribute(
        "DICOM.instanceUIDs", " ".join(database.fileValue(f, "0008,0018") or "Unknown" for f in files)
    )
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    patient = sh.CreateSubjectItem(
        sh.GetSceneItemID(), database.fileValue(files[0], "0010,0010") or "Anonymous"
    )
    study = sh.CreateStudyItem(patient, database.fileValue(files[0], "0008,1030") or "Study")
    item = sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)
    sh.SetItemParent(item, study)
    return node
