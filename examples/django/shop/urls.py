from django.urls import path

from shop import views

urlpatterns = [
    path("uploads/", views.upload),
    path("jobs/<str:job_id>/", views.job_status),
    path("newsletters/", views.newsletter),
    path("webhooks/", views.webhook),
]
